//! The top words per first letter: a count per word, keyed by word, then
//! keyed again by the word's first letter to keep each letter's most
//! frequent words. Two keyed stages, two exchanges, one checkpoint.

use std::fmt;
use std::path::PathBuf;

use weir::prelude::*;
use weir::sink::Sink;
use weir::source::Source;

use crate::wordcount::counted;

/// A letter's most frequent words, most frequent first (ties: the word
/// first in byte order first), with their counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Top(pub Vec<(CompactString, u64)>);

impl Top {
    /// Takes `word`'s new `count` (counts only rise) and keeps the `n`
    /// first; returns whether the list changed. A word that falls out is
    /// forgotten: its count was below the last kept one's, which only
    /// rises, so it is back only if its own count passes that.
    pub fn update(&mut self, word: CompactString, count: u64, n: usize) -> bool {
        let was_in = match self.0.iter_mut().find(|(w, _)| *w == word) {
            Some(entry) => {
                entry.1 = count;
                true
            }
            None => {
                self.0.push((word.clone(), count));
                false
            }
        };
        self.0
            .sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        self.0.truncate(n);
        was_in || self.0.iter().any(|(w, _)| *w == word)
    }
}

/// `word=count` pairs, separated by spaces.
impl fmt::Display for Top {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (word, count)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{word}={count}")?;
        }
        Ok(())
    }
}

/// Each letter's top words.
pub const TOP: ValueDescriptor<Top> = ValueDescriptor::new("top");

/// Keeps the `n` most frequent words of each first letter, from the
/// running counts of the words; emits the letter's list whenever it
/// changes.
#[derive(Clone, Debug)]
pub struct TopWords {
    /// How many words each letter keeps.
    pub n: usize,
}

impl Processor for TopWords {
    type Key = char;
    type In = (CompactString, u64);
    type Out = Top;

    fn declare(&self, d: &mut Declarations) {
        // A list kept for fewer words has forgotten those that fell out.
        d.state(&TOP).setting("top", self.n);
    }

    async fn process(
        &mut self,
        rec: Record<char, (CompactString, u64)>,
        ctx: &mut Context<'_, Self>,
    ) -> Result<()> {
        let (word, count) = rec.value;
        let mut top = ctx.state(&TOP)?;
        let mut list = top.get()?.unwrap_or_default();
        if list.update(word, count, self.n) {
            top.put(&list)?;
            ctx.emit(rec.key, list);
        }
        Ok(())
    }
}

/// The first letter of `word` (words are never empty).
pub fn first_letter(word: &str) -> char {
    word.chars().next().unwrap_or(' ')
}

/// Lines from `source`, split on ASCII whitespace, counted per word
/// ([`counted`], keyed by word), keyed again by first letter, and each
/// letter's top `n` words written to `sink` whenever they change. A
/// letter's list can be queried (`/api/state/top/a`).
pub fn pipeline<S, K>(p: &mut Pipeline, source: S, n: usize, sink: K)
where
    S: Source<Item = String>,
    K: Sink<Record<char, Top>>,
{
    counted(p, source)
        .key_with(|word, count| (first_letter(&word), (word, count)))
        .process(TopWords { n })
        .queryable(&TOP)
        .sink(sink);
}

/// [`pipeline`] into files: `letter<TAB>word=count word=count ...` lines
/// under `output`.
pub fn to_files<S: Source<Item = String>>(p: &mut Pipeline, source: S, n: usize, output: PathBuf) {
    pipeline(p, source, n, FileSink::tsv(output));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn top(words: &[(&str, u64)]) -> Top {
        Top(words.iter().map(|(w, c)| ((*w).into(), *c)).collect())
    }

    #[test]
    fn a_word_enters_when_it_passes_the_last_kept_and_leaves_when_passed() {
        let mut t = Top::default();
        assert!(t.update("b".into(), 1, 2));
        assert!(t.update("a".into(), 1, 2));
        assert_eq!(t, top(&[("a", 1), ("b", 1)]));
        // A tie with the last kept loses to the word first in byte order.
        assert!(!t.update("c".into(), 1, 2));
        assert!(t.update("c".into(), 2, 2));
        assert_eq!(t, top(&[("c", 2), ("a", 1)]));
        assert!(t.update("a".into(), 2, 2));
        assert_eq!(t, top(&[("a", 2), ("c", 2)]));
        assert_eq!(t.to_string(), "a=2 c=2");
    }
}
