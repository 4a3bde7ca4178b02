//! The top words example's input and its independent verifier: each
//! letter's lists must follow one another one occurrence at a time, none
//! repeated or skipped, and end at the letter's true top words.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How many words each letter keeps (the example's default).
pub const TOP: usize = 3;

/// `files` files of `words` words in all, skewed, each word a letter and a
/// number (`k1234`): every letter has frequent and rare words.
pub fn make_input(dir: &Path, files: usize, words: usize, seed: u64) {
    std::fs::create_dir_all(dir).expect("create input dir");
    let mut rng = StdRng::seed_from_u64(seed);
    for f in 0..files {
        let mut text = String::new();
        for i in 0..words / files {
            let r: f64 = rng.random();
            let id = (r * r * r * 5_000.0) as u32;
            let letter = char::from(b'a' + (id % 26) as u8);
            text.push_str(&format!("{letter}{id}"));
            text.push(if i % 10 == 9 { '\n' } else { ' ' });
        }
        std::fs::write(dir.join(format!("part{f}.txt")), text).expect("write input");
    }
}

/// Each letter's top words over the whole input, as the example's lines
/// show them: most frequent first, ties by the word.
pub fn expected_tops(input: &Path) -> BTreeMap<char, String> {
    let counts = super::expected_counts(input);
    let mut by_letter: BTreeMap<char, Vec<(&String, u64)>> = BTreeMap::new();
    for (word, n) in &counts {
        let letter = word.chars().next().expect("a word");
        by_letter.entry(letter).or_default().push((word, *n));
    }
    by_letter
        .into_iter()
        .map(|(letter, mut words)| {
            words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            let top: Vec<String> = words
                .iter()
                .take(TOP)
                .map(|(w, n)| format!("{w}={n}"))
                .collect();
            (letter, top.join(" "))
        })
        .collect()
}

/// `word=count ...` as pairs.
fn parse_list(list: &str) -> Vec<(String, u64)> {
    list.split(' ')
        .map(|pair| {
            let (w, n) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("not word=count: {pair:?}"));
            (w.to_owned(), n.parse().expect("a count"))
        })
        .collect()
}

/// Checks that `next` is `prev` after exactly one more occurrence of one
/// word: a listed word one higher, or a new word entering (the last one
/// leaving a full list). Anything else is a lost or repeated record.
fn check_step(letter: char, prev: &[(String, u64)], next: &[(String, u64)]) {
    let was: HashMap<&str, u64> = prev.iter().map(|(w, n)| (w.as_str(), *n)).collect();
    let changed: Vec<&(String, u64)> = next
        .iter()
        .filter(|(w, n)| was.get(w.as_str()) != Some(n))
        .collect();
    assert_eq!(
        changed.len(),
        1,
        "letter {letter}: {prev:?} -> {next:?} is not one occurrence"
    );
    let (word, n) = changed[0];
    let dropped = prev
        .iter()
        .filter(|(w, _)| !next.iter().any(|(v, _)| v == w))
        .count();
    match was.get(word.as_str()) {
        Some(before) => {
            assert_eq!(
                *n,
                before + 1,
                "letter {letter}: {word} jumped {before} -> {n}"
            );
            assert_eq!(dropped, 0, "letter {letter}: {prev:?} -> {next:?}");
        }
        None => assert_eq!(
            dropped,
            usize::from(prev.len() == TOP),
            "letter {letter}: {prev:?} -> {next:?}"
        ),
    }
    let mut sorted = next.to_vec();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    assert_eq!(sorted, next, "letter {letter}: list out of order");
}

/// Every letter's lines under `output`, in order; a letter is in one file.
pub fn file_lists(output: &Path) -> BTreeMap<char, Vec<String>> {
    let mut lists: BTreeMap<char, Vec<String>> = BTreeMap::new();
    let mut file_of: BTreeMap<char, std::ffi::OsString> = BTreeMap::new();
    for entry in std::fs::read_dir(output).expect("list output") {
        let entry = entry.expect("entry");
        let text = std::fs::read_to_string(entry.path()).expect("read output");
        for line in text.lines() {
            let (letter, list) = line
                .split_once('\t')
                .unwrap_or_else(|| panic!("malformed line {line:?}"));
            let letter = letter.chars().next().expect("a letter");
            let file = file_of.entry(letter).or_insert_with(|| entry.file_name());
            assert_eq!(*file, entry.file_name(), "letter {letter} in two outputs");
            lists.entry(letter).or_default().push(list.to_owned());
        }
    }
    lists
}

/// Checks every letter's `lists` (in the order written) step by step and
/// against the top words of `input`; returns how many lists there are.
pub fn verify(input: &Path, lists: &BTreeMap<char, Vec<String>>) -> usize {
    let expected = expected_tops(input);
    assert_eq!(
        lists.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    let mut lines = 0;
    for (letter, seq) in lists {
        let mut prev = Vec::new();
        for list in seq {
            let next = parse_list(list);
            check_step(*letter, &prev, &next);
            prev = next;
        }
        assert_eq!(
            seq.last(),
            expected.get(letter),
            "letter {letter}: the last list is not the top words"
        );
        lines += seq.len();
    }
    lines
}
