//! Windowed streams (`keyed.window(Windows::tumbling(..)).count()` and
//! the like) and joins (`keyed.join_table(..)`, `keyed.join_window(..)`):
//! each an operator of
//! `weir_core::window` or `weir_core::join` run as the keyed stream's next
//! processor.

use serde::de::DeserializeOwned;
use serde::Serialize;
use weir_core::join::{JoinInput, JoinKind, JoinWindows, TableJoin, WindowJoin};
use weir_core::window::{
    Accumulate, Aggregate, Count, Emit, Reduce, SessionOperator, Sessions, WindowFunction,
    WindowOperator, Windowed, Windows,
};
use weir_core::{Codec, Either, Error, Key, OutputTag};

use super::KeyedStream;

/// A keyed stream cut into tumbling or hopping windows; an aggregation
/// ends it (see [`KeyedStream::window`]).
pub struct WindowedStream<'p, K, V> {
    stream: KeyedStream<'p, K, V>,
    windows: Windows,
    emit: Emit,
    late: Option<OutputTag<K, V>>,
}

impl<'p, K: Key, V: Clone + Send + 'static> WindowedStream<'p, K, V> {
    /// Emits each window's result once, when it closes ([`Emit::Final`],
    /// the default), or after every record ([`Emit::EveryUpdate`]).
    pub fn emit(mut self, emit: Emit) -> Self {
        self.emit = emit;
        self
    }

    /// Sends records later than their windows' grace to the side output
    /// `tag` (give it a sink with [`Pipeline::side_output`](super::Pipeline::side_output));
    /// without it they are dropped and counted in `weir_late_records_total`.
    pub fn late(mut self, tag: &OutputTag<K, V>) -> Self {
        self.late = Some(OutputTag::new(tag.name()));
        self
    }

    /// Each window's result is made by `function`, with stores of its own
    /// per window (see [`WindowFunction`]).
    pub fn apply<F: WindowFunction<K, V>>(
        self,
        function: F,
    ) -> KeyedStream<'p, K, Windowed<F::Out>> {
        let op = WindowOperator::new(self.windows, function, self.emit, self.late);
        self.stream
            .named_process(&format!("window:{}", self.windows.describe()), op)
    }

    /// Each window's result is `agg`'s fold of its values.
    pub fn aggregate<A: Aggregate<V>>(self, agg: A) -> KeyedStream<'p, K, Windowed<A::Out>> {
        self.apply(Accumulate::new(agg))
    }

    /// Each window's result is how many records it holds.
    pub fn count(self) -> KeyedStream<'p, K, Windowed<u64>> {
        self.aggregate(Count)
    }

    /// Each window's result is its values combined pairwise with `f`.
    pub fn reduce<F>(self, f: F) -> KeyedStream<'p, K, Windowed<V>>
    where
        V: Codec + Serialize + DeserializeOwned,
        F: Fn(V, V) -> V + Send + Sync + 'static,
    {
        self.aggregate(Reduce::new(f))
    }
}

/// A keyed stream cut into session windows; an aggregation ends it (see
/// [`KeyedStream::session_window`]).
pub struct SessionWindowedStream<'p, K, V> {
    stream: KeyedStream<'p, K, V>,
    sessions: Sessions,
    emit: Emit,
    late: Option<OutputTag<K, V>>,
}

impl<'p, K: Key, V: Send + 'static> SessionWindowedStream<'p, K, V> {
    /// Emits each session's result once, when it closes (the default), or
    /// after every record.
    pub fn emit(mut self, emit: Emit) -> Self {
        self.emit = emit;
        self
    }

    /// Sends records whose session had closed to the side output `tag`;
    /// without it they are dropped and counted.
    pub fn late(mut self, tag: &OutputTag<K, V>) -> Self {
        self.late = Some(OutputTag::new(tag.name()));
        self
    }

    /// Each session's result is `agg`'s fold of its values (merged when
    /// sessions merge).
    pub fn aggregate<A: Aggregate<V>>(self, agg: A) -> KeyedStream<'p, K, Windowed<A::Out>> {
        let op = SessionOperator::new(self.sessions, agg, self.emit, self.late);
        self.stream
            .named_process(&format!("window:{}", self.sessions.describe()), op)
    }

    /// Each session's result is how many records it holds.
    pub fn count(self) -> KeyedStream<'p, K, Windowed<u64>> {
        self.aggregate(Count)
    }
}

impl<'p, K: Key, S, T> KeyedStream<'p, K, JoinInput<S, T>>
where
    S: Serialize + DeserializeOwned + Send + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
{
    /// Joins the stream side of this stream with the latest value of its
    /// table side for the same key, as of each stream record's event time
    /// (see [`TableJoin`]): `kind` says whether records without a value
    /// are emitted (with `None`), `join` makes the output.
    pub fn join_table<O, F>(self, kind: JoinKind, join: F) -> KeyedStream<'p, K, O>
    where
        O: Send + 'static,
        F: Fn(&K, S, Option<&T>) -> O + Send + Sync + 'static,
    {
        let what = match kind {
            JoinKind::Inner => "join:table(inner)",
            JoinKind::Left => "join:table(left)",
        };
        self.named_process(what, TableJoin::new(kind, join))
    }

    /// [`join_table`](Self::join_table), where every table update comes
    /// from input `table_input` of the source (`KafkaSource::and`'s topics
    /// and `Union`'s sides, numbered from 0 in order) and no stream record
    /// does: a stream record whose time that input's watermark has passed
    /// (the common case of a table that changes slowly) is joined at once,
    /// without waiting in state for the other inputs' watermark (see
    /// [`TableJoin::table_from`]). It must be the pipeline's first
    /// processor, right after the source's `key_by`.
    pub fn join_table_from<O, F>(
        self,
        table_input: usize,
        kind: JoinKind,
        join: F,
    ) -> KeyedStream<'p, K, O>
    where
        O: Send + 'static,
        F: Fn(&K, S, Option<&T>) -> O + Send + Sync + 'static,
    {
        if !self.p.declared.is_empty() {
            self.p.error.get_or_insert(Error::Config(format!(
                "`join_table_from({table_input}, ..)` follows another processor, whose output is held back from the source's watermarks; join there with `join_table`, or make the join the pipeline's first processor, right after the source's `key_by`"
            )));
        }
        let what = match kind {
            JoinKind::Inner => format!("join:table(inner, table from input {table_input})"),
            JoinKind::Left => format!("join:table(left, table from input {table_input})"),
        };
        self.named_process(&what, TableJoin::new(kind, join).table_from(table_input))
    }
}

impl<'p, K: Key, L, R> KeyedStream<'p, K, Either<L, R>>
where
    L: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    /// Joins the left records of this stream with its right records of
    /// the same key whose event times are within `windows` (see
    /// [`WindowJoin`]): `join(key, &left, Some(&right))` for every such
    /// pair, once, as soon as both are in; with [`JoinKind::Left`] also
    /// `join(key, &left, None)` for a left record that found no partner,
    /// once none can come any more. The two sides are usually two inputs
    /// (`KafkaSource::and`, `Union`), keyed by the join key through one
    /// exchange, so that they meet in the same key group.
    pub fn join_window<O, F>(
        self,
        windows: JoinWindows,
        kind: JoinKind,
        join: F,
    ) -> KeyedStream<'p, K, O>
    where
        O: Send + 'static,
        F: Fn(&K, &L, Option<&R>) -> O + Send + Sync + 'static,
    {
        let what = format!(
            "join:window({}, {})",
            match kind {
                JoinKind::Inner => "inner",
                JoinKind::Left => "left",
            },
            windows.describe()
        );
        self.named_process(&what, WindowJoin::new(kind, windows, join))
    }
}

impl<'p, K: Key, V: Send + 'static> KeyedStream<'p, K, V> {
    /// Cuts the stream into tumbling or hopping `windows` per key: end it
    /// with `count`, `reduce`, `aggregate` or `apply`. Window state is
    /// keyed state: checkpointed, restored and rolled back with the rest.
    pub fn window(self, windows: Windows) -> WindowedStream<'p, K, V> {
        WindowedStream {
            stream: self,
            windows,
            emit: Emit::Final,
            late: None,
        }
    }

    /// Cuts the stream into session windows per key.
    pub fn session_window(self, sessions: Sessions) -> SessionWindowedStream<'p, K, V> {
        SessionWindowedStream {
            stream: self,
            sessions,
            emit: Emit::Final,
            late: None,
        }
    }
}
