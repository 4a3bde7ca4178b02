//! [`Union`]: two sources read as one, each record tagged with its side.

use std::collections::BTreeMap;
use std::path::PathBuf;

use either::Either;

use super::{Lag, ReadStatus, ResetTo, Resume, Source, SourceReader, TaskOffsets};
use crate::group::Member;
use crate::{Error, Record, Result};

/// Two sources read side by side as one pipeline input, of values
/// [`Either::Left`] from the first and [`Either::Right`] from the second:
/// the inputs of a join, or two directories of one kind of record. Each
/// side's tasks are named `<name>/<task>`, so that two directories may hold
/// files of the same name; their positions are checkpointed together, as
/// one source's are. Nest unions for more than two.
///
/// For sources without a consumer group (files): the tasks of a union are
/// all this instance's. Several Kafka topics are one
/// `KafkaSource` (`KafkaSource::and`), one member of the application's
/// group; a union with a source that joins a group is refused at start.
#[derive(Debug, Clone)]
pub struct Union<A, B> {
    left: (String, A),
    right: (String, B),
}

impl<A: Source, B: Source> Union<A, B> {
    /// `left` and `right`, each with the name its tasks are prefixed with
    /// (not empty, without `/`, not the same).
    pub fn new(left: (&str, A), right: (&str, B)) -> Self {
        Union {
            left: (left.0.to_owned(), left.1),
            right: (right.0.to_owned(), right.1),
        }
    }

    /// The names, refused when they cannot tell the sides' tasks apart,
    /// or when a side is shared through a group (before anything joins it).
    fn names(&self) -> Result<(&str, &str)> {
        let (l, r) = (self.left.0.as_str(), self.right.0.as_str());
        for (name, grouped) in [(l, self.left.1.has_group()), (r, self.right.1.has_group())] {
            if grouped {
                return Err(Error::Config(format!(
                    "the input `{name}` of a union is shared by a consumer group, which a union cannot share its tasks by; read several Kafka topics as one source (`KafkaSource::and`), and files with `Union`"
                )));
            }
        }
        for name in [l, r] {
            if name.is_empty() || name.contains('/') {
                return Err(Error::Config(format!(
                    "a union's inputs are named for their tasks (`<name>/<task>`): `{name}` is not such a name; give each a non-empty name without `/`"
                )));
            }
        }
        if l == r {
            return Err(Error::Config(format!(
                "both inputs of a union are named `{l}`: their tasks would mix; give them different names"
            )));
        }
        Ok((l, r))
    }

    /// Which side `task` (`<name>/<task>`) is of, and its name there.
    fn side<'t>(&self, task: &'t str) -> Result<Side<'t>> {
        let (l, r) = self.names()?;
        match task.split_once('/') {
            Some((name, inner)) if name == l => Ok(Side::Left(inner)),
            Some((name, inner)) if name == r => Ok(Side::Right(inner)),
            _ => Err(Error::Config(format!(
                "`{task}` is a task of neither input of the union (`{l}/…`, `{r}/…`)"
            ))),
        }
    }

    /// `positions` split by side, named as each side names its tasks
    /// (tasks of neither side are left out).
    fn split<V: Clone>(
        &self,
        positions: &BTreeMap<String, V>,
    ) -> Result<(BTreeMap<String, V>, BTreeMap<String, V>)> {
        let (mut left, mut right) = (BTreeMap::new(), BTreeMap::new());
        for (task, v) in positions {
            match self.side(task) {
                Ok(Side::Left(t)) => left.insert(t.to_owned(), v.clone()),
                Ok(Side::Right(t)) => right.insert(t.to_owned(), v.clone()),
                Err(_) => None,
            };
        }
        Ok((left, right))
    }
}

/// A union's task, as its side names it.
enum Side<'t> {
    Left(&'t str),
    Right(&'t str),
}

/// `task` of the side named `name`, as the union names it.
fn prefixed(name: &str, task: &str) -> String {
    format!("{name}/{task}")
}

/// `map` with each key prefixed by `name/`.
fn prefix_keys<'a, V: 'a>(
    name: &'a str,
    map: BTreeMap<String, V>,
) -> impl Iterator<Item = (String, V)> + 'a {
    map.into_iter().map(move |(t, v)| (prefixed(name, &t), v))
}

impl<A: Source, B: Source> Source for Union<A, B> {
    type Item = Either<A::Item, B::Item>;

    fn describe(&self) -> String {
        format!(
            "union({}:{}, {}:{})",
            self.left.0,
            self.left.1.describe(),
            self.right.0,
            self.right.1.describe()
        )
    }

    fn tasks(&self) -> Result<Vec<String>> {
        let (l, r) = self.names()?;
        let mut tasks: Vec<String> = self
            .left
            .1
            .tasks()?
            .iter()
            .map(|t| prefixed(l, t))
            .collect();
        tasks.extend(self.right.1.tasks()?.iter().map(|t| prefixed(r, t)));
        Ok(tasks)
    }

    fn open(&self, task: &str, from: Option<&Resume>) -> Result<Box<dyn SourceReader<Self::Item>>> {
        Ok(match self.side(task)? {
            Side::Left(t) => Box::new(Tagged {
                inner: self.left.1.open(t, from)?,
                name: self.left.0.clone(),
                buffer: Vec::new(),
                tag: Either::Left,
            }),
            Side::Right(t) => Box::new(Tagged {
                inner: self.right.1.open(t, from)?,
                name: self.right.0.clone(),
                buffer: Vec::new(),
                tag: Either::Right,
            }),
        })
    }

    fn inputs(&self) -> usize {
        self.left.1.inputs() + self.right.1.inputs()
    }

    /// The left side's inputs first, then the right side's.
    fn input_of(&self, task: &str) -> usize {
        match self.side(task) {
            Ok(Side::Left(t)) => self.left.1.input_of(t),
            Ok(Side::Right(t)) => self.left.1.inputs() + self.right.1.input_of(t),
            Err(_) => 0,
        }
    }

    fn locations(&self) -> Vec<PathBuf> {
        let mut all = self.left.1.locations();
        all.extend(self.right.1.locations());
        all
    }

    fn resume_points(
        &self,
        tasks: &[String],
        recorded: &[(String, Resume)],
    ) -> Result<BTreeMap<String, Resume>> {
        let (l, r) = self.names()?;
        let (mut left_tasks, mut right_tasks) = (Vec::new(), Vec::new());
        for task in tasks {
            match self.side(task)? {
                Side::Left(t) => left_tasks.push(t.to_owned()),
                Side::Right(t) => right_tasks.push(t.to_owned()),
            }
        }
        let (mut left_recorded, mut right_recorded) = (Vec::new(), Vec::new());
        for (task, resume) in recorded {
            match self.side(task) {
                Ok(Side::Left(t)) => left_recorded.push((t.to_owned(), resume.clone())),
                Ok(Side::Right(t)) => right_recorded.push((t.to_owned(), resume.clone())),
                Err(_) => {}
            }
        }
        let left = self.left.1.resume_points(&left_tasks, &left_recorded)?;
        let right = self.right.1.resume_points(&right_tasks, &right_recorded)?;
        Ok(prefix_keys(l, left).chain(prefix_keys(r, right)).collect())
    }

    fn active_readers(&self, own: Option<&str>) -> Result<Vec<String>> {
        let mut all = self.left.1.active_readers(own)?;
        all.extend(self.right.1.active_readers(own)?);
        Ok(all)
    }

    fn bounded(&self) -> bool {
        self.left.1.bounded() && self.right.1.bounded()
    }

    fn until_idle(&self) -> Option<std::time::Duration> {
        match (self.left.1.until_idle(), self.right.1.until_idle()) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Joins nothing: no side has a group (see [`names`](Self::names)).
    fn join(&self, _instance: &str, _shared: bool) -> Result<Option<Member>> {
        self.names()?;
        Ok(None)
    }

    fn offsets(&self) -> Result<Vec<TaskOffsets>> {
        let (l, r) = self.names()?;
        let name = |n: &str, mut o: TaskOffsets| {
            o.task = prefixed(n, &o.task);
            o
        };
        let mut all: Vec<TaskOffsets> = (self.left.1.offsets()?)
            .into_iter()
            .map(|o| name(l, o))
            .collect();
        all.extend(self.right.1.offsets()?.into_iter().map(|o| name(r, o)));
        Ok(all)
    }

    fn resolve(&self, to: ResetTo) -> Result<BTreeMap<String, u64>> {
        let (l, r) = self.names()?;
        let left = self.left.1.resolve(to)?;
        let right = self.right.1.resolve(to)?;
        Ok(prefix_keys(l, left).chain(prefix_keys(r, right)).collect())
    }

    fn publish(&self, positions: &BTreeMap<String, u64>) -> Result<()> {
        let (left, right) = self.split(positions)?;
        self.left.1.publish(&left)?;
        self.right.1.publish(&right)
    }
}

/// A side's reader, whose values it tags with the side.
struct Tagged<T, U> {
    inner: Box<dyn SourceReader<T>>,
    /// The side's name, for its tasks' names.
    name: String,
    /// The side's records, read before they are tagged.
    buffer: Vec<Record<(), T>>,
    tag: fn(T) -> U,
}

impl<T: Send, U> SourceReader<U> for Tagged<T, U> {
    fn read(&mut self, out: &mut Vec<Record<(), U>>, max: usize) -> Result<ReadStatus> {
        let status = self.inner.read(&mut self.buffer, max);
        // Records read before a bad one are returned with its error.
        out.extend(self.buffer.drain(..).map(|r| r.map_value(self.tag)));
        status.map_err(|e| match e {
            Error::BadInput {
                task,
                position,
                message,
                raw,
            } => Error::BadInput {
                task: prefixed(&self.name, &task),
                position,
                message,
                raw,
            },
            other => other,
        })
    }

    fn position(&self) -> u64 {
        self.inner.position()
    }

    fn identity(&self) -> Option<String> {
        self.inner.identity()
    }

    fn committed(&mut self, position: u64) -> Result<()> {
        self.inner.committed(position)
    }

    fn lag(&self) -> Option<Lag> {
        self.inner.lag()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source of one task that may claim a group; it opens nothing.
    struct Fake {
        group: bool,
    }

    impl Source for Fake {
        type Item = ();

        fn describe(&self) -> String {
            "fake".into()
        }

        fn tasks(&self) -> Result<Vec<String>> {
            Ok(vec!["t".into()])
        }

        fn open(&self, _task: &str, _from: Option<&Resume>) -> Result<Box<dyn SourceReader<()>>> {
            Err(Error::Config("not opened in these tests".into()))
        }

        fn has_group(&self) -> bool {
            self.group
        }

        fn join(&self, _instance: &str, _shared: bool) -> Result<Option<Member>> {
            panic!("a union must not join a side's group");
        }
    }

    #[test]
    fn sides_are_named_and_numbered_and_a_grouped_side_is_refused_before_joining() {
        let files = Union::new(("a", Fake { group: false }), ("b", Fake { group: false }));
        assert_eq!(files.tasks().ok(), Some(vec!["a/t".into(), "b/t".into()]));
        assert_eq!(
            (files.inputs(), files.input_of("a/t"), files.input_of("b/t")),
            (2, 0, 1)
        );
        let nested = Union::new(("x", files), ("c", Fake { group: false }));
        assert_eq!(nested.input_of("x/b/t"), 1);
        assert_eq!(nested.input_of("c/t"), 2);
        let grouped = Union::new(("a", Fake { group: false }), ("k", Fake { group: true }));
        let err = grouped.join("i", false).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("`k` of a union is shared by a consumer group")));
        assert!(grouped.tasks().is_err());
    }
}
