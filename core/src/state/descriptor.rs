//! Declared state: a processor declares each of its stores once, by a
//! descriptor that carries its name and its types (as Flink's
//! `ValueStateDescriptor` does), and reaches it through that descriptor.
//! The declarations go into the pipeline's fingerprint and its manifest,
//! so that a restart on state written with other types is refused before
//! anything is read, naming the store and both types.

use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use super::{keyed_key_into, Access, ListState, MapState, StateBackend, ValueState};
use super::{KEYED_TAG, KEYED_TTL_TAG, MAP_TAG, MAP_TTL_TAG};
use crate::output::{OutputSpec, OutputTag};
use crate::serdes::Bincode;
use crate::{Codec, Error, Result, Serde};

/// What kind of store a descriptor declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    /// One value per key ([`ValueState`]).
    Value,
    /// A map per key ([`MapState`]).
    Map,
    /// A list per key ([`ListState`]).
    List,
}

impl StateKind {
    fn word(self) -> &'static str {
        match self {
            StateKind::Value => "value",
            StateKind::Map => "map",
            StateKind::List => "list",
        }
    }
}

/// A declared store, as the pipeline records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSpec {
    /// Its name, unique among the processor's stores.
    pub name: &'static str,
    /// Its kind.
    pub kind: StateKind,
    /// Its stored types as Rust names them (`u64`, `i64, my::Session`).
    pub types: String,
    /// Its time to live, if it has one.
    pub ttl: Option<Duration>,
    type_id: TypeId,
}

impl StateSpec {
    /// How the fingerprint and the manifest record it, e.g. `map<i64,
    /// my::Session>` or `value<u64> ttl 60s`. A restart is refused when a
    /// store's signature changed: its entries would be read as another
    /// type, or laid out otherwise.
    pub fn signature(&self) -> String {
        let mut s = format!("{}<{}>", self.kind.word(), self.types);
        if self.ttl.is_some() {
            // Only whether it has one: the expiry is stored with each
            // value, so another duration reads the same entries.
            s.push_str(" with ttl");
        }
        s
    }
}

impl fmt::Display for StateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.name, self.signature())
    }
}

/// Where a handle is opened: the worker's state, the current key and the
/// clocks (built by the [`Context`](crate::Context)).
#[doc(hidden)]
pub struct Place<'a> {
    pub(crate) backend: &'a mut dyn StateBackend,
    pub(crate) group: u16,
    pub(crate) node: u16,
    pub(crate) key: &'a [u8],
    /// A reused buffer for a value's state key.
    pub(crate) buf: &'a mut Vec<u8>,
    pub(crate) now: i64,
}

/// A descriptor of a store: its name and types, and how a handle to the
/// current key's entry is made. Implemented by [`ValueDescriptor`],
/// [`MapDescriptor`] and [`ListDescriptor`].
pub trait StateDescriptor {
    /// The handle [`Context::state`](crate::Context::state) gives.
    type Handle<'a>;
    /// The store's name.
    fn name(&self) -> &'static str;
    /// The declaration the pipeline records.
    fn spec(&self) -> StateSpec;
    /// Its kind and the identity of its types, for the check that a
    /// handle's store is declared (cheaper than building the whole spec).
    #[doc(hidden)]
    fn identity(&self) -> (StateKind, TypeId);
    /// Whether its entries expire.
    #[doc(hidden)]
    fn expires(&self) -> bool;
    /// The handle of the current key's entry.
    #[doc(hidden)]
    fn handle<'a>(&self, place: Place<'a>) -> Result<Self::Handle<'a>>;
}

fn millis(ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1))
}

/// How a signature names a stored `T`: its type, and the serde it is
/// written with where that is not the pipeline's own (bincode), so that
/// a restart with another serde is refused as another type is.
fn stored<T, S: Serde<T>>(serde: &S) -> String {
    let name = std::any::type_name::<T>();
    match serde.name().as_str() {
        "bincode" => name.to_owned(),
        format => format!("{name} as {format}"),
    }
}

/// Declares a store of one value per key, of type `T`, written with the
/// serde `S` (the pipeline's own bincode unless
/// [`with_serde`](Self::with_serde) names another).
///
/// ```
/// # use weir_core::state::ValueDescriptor;
/// # use weir_core::serdes::Json;
/// const COUNT: ValueDescriptor<u64> = ValueDescriptor::new("count");
/// // JSON that other tools can read (`weir state`), into your own type.
/// const SEEN: ValueDescriptor<Vec<String>, Json<Vec<String>>> =
///     ValueDescriptor::new("seen").with_serde(Json::new());
/// ```
pub struct ValueDescriptor<T, S = Bincode> {
    name: &'static str,
    ttl: Option<Duration>,
    serde: S,
    _t: PhantomData<fn() -> T>,
}

impl<T> ValueDescriptor<T> {
    /// A store called `name` (1 to 255 bytes, unique in its processor).
    pub const fn new(name: &'static str) -> Self {
        ValueDescriptor {
            name,
            ttl: None,
            serde: Bincode,
            _t: PhantomData,
        }
    }

    /// Its values are written with `serde` (JSON, your own format) rather
    /// than bincode. The serde goes into the fingerprint: state written
    /// with another is refused at start, as another type is.
    pub const fn with_serde<S: Serde<T>>(self, serde: S) -> ValueDescriptor<T, S> {
        ValueDescriptor {
            name: self.name,
            ttl: self.ttl,
            serde,
            _t: PhantomData,
        }
    }
}

impl<T, S> ValueDescriptor<T, S> {
    /// A value expires `ttl` of processing time after it was last written:
    /// it reads as absent, and its storage is reclaimed.
    pub const fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Its time to live, if it has one.
    pub const fn ttl(&self) -> Option<Duration> {
        self.ttl
    }
}

impl<T: 'static, S: Serde<T> + Clone> StateDescriptor for ValueDescriptor<T, S> {
    type Handle<'a> = ValueState<'a, T, S>;

    fn name(&self) -> &'static str {
        self.name
    }

    fn spec(&self) -> StateSpec {
        StateSpec {
            name: self.name,
            kind: StateKind::Value,
            types: stored::<T, S>(&self.serde),
            ttl: self.ttl,
            type_id: TypeId::of::<(T, S)>(),
        }
    }

    fn expires(&self) -> bool {
        self.ttl.is_some()
    }

    fn identity(&self) -> (StateKind, TypeId) {
        (StateKind::Value, TypeId::of::<(T, S)>())
    }

    fn handle<'a>(&self, place: Place<'a>) -> Result<ValueState<'a, T, S>> {
        let tag = match self.ttl {
            Some(_) => KEYED_TTL_TAG,
            None => KEYED_TAG,
        };
        keyed_key_into(
            place.buf,
            tag,
            place.group,
            place.node,
            self.name,
            place.key,
        )?;
        Ok(ValueState::new(
            Access {
                backend: place.backend,
                now: place.now,
                name: self.name,
                ttl_ms: millis(self.ttl),
            },
            place.buf,
            self.serde.clone(),
        ))
    }
}

/// Declares a store of a map per key, from `K` to `V`, whose entries are
/// read one by one or in the order of their encoded keys. Its keys are
/// encoded with [`Codec`] (their order is that of the encodings), its
/// values with the serde `S` (bincode unless
/// [`with_serde`](Self::with_serde) names another).
pub struct MapDescriptor<K, V, S = Bincode> {
    name: &'static str,
    ttl: Option<Duration>,
    serde: S,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K, V> MapDescriptor<K, V> {
    /// A store called `name` (1 to 255 bytes, unique in its processor).
    pub const fn new(name: &'static str) -> Self {
        MapDescriptor {
            name,
            ttl: None,
            serde: Bincode,
            _t: PhantomData,
        }
    }

    /// Its values are written with `serde` rather than bincode (see
    /// [`ValueDescriptor::with_serde`]).
    pub const fn with_serde<S: Serde<V>>(self, serde: S) -> MapDescriptor<K, V, S> {
        MapDescriptor {
            name: self.name,
            ttl: self.ttl,
            serde,
            _t: PhantomData,
        }
    }
}

impl<K, V, S> MapDescriptor<K, V, S> {
    /// An entry expires `ttl` of processing time after it was last written.
    pub const fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

impl<K: Codec + 'static, V: 'static, S: Serde<V> + Clone> StateDescriptor
    for MapDescriptor<K, V, S>
{
    type Handle<'a> = MapState<'a, K, V, S>;

    fn name(&self) -> &'static str {
        self.name
    }

    fn spec(&self) -> StateSpec {
        StateSpec {
            name: self.name,
            kind: StateKind::Map,
            types: format!(
                "{}, {}",
                std::any::type_name::<K>(),
                stored::<V, S>(&self.serde)
            ),
            ttl: self.ttl,
            type_id: TypeId::of::<(K, V, S)>(),
        }
    }

    fn expires(&self) -> bool {
        self.ttl.is_some()
    }

    fn identity(&self) -> (StateKind, TypeId) {
        (StateKind::Map, TypeId::of::<(K, V, S)>())
    }

    fn handle<'a>(&self, place: Place<'a>) -> Result<MapState<'a, K, V, S>> {
        let tag = match self.ttl {
            Some(_) => MAP_TTL_TAG,
            None => MAP_TAG,
        };
        let mut prefix = Vec::new();
        keyed_key_into(
            &mut prefix,
            tag,
            place.group,
            place.node,
            self.name,
            place.key,
        )?;
        Ok(MapState::new(
            Access {
                backend: place.backend,
                now: place.now,
                name: self.name,
                ttl_ms: millis(self.ttl),
            },
            prefix,
            self.serde.clone(),
        ))
    }
}

/// Declares a store of a list per key, of `T`s in the order they were
/// added; adding one does not read the others. Its elements are written
/// with the serde `S` (bincode unless [`with_serde`](Self::with_serde)
/// names another).
pub struct ListDescriptor<T, S = Bincode> {
    name: &'static str,
    ttl: Option<Duration>,
    serde: S,
    _t: PhantomData<fn() -> T>,
}

impl<T> ListDescriptor<T> {
    /// A store called `name` (1 to 255 bytes, unique in its processor).
    pub const fn new(name: &'static str) -> Self {
        ListDescriptor {
            name,
            ttl: None,
            serde: Bincode,
            _t: PhantomData,
        }
    }

    /// Its elements are written with `serde` rather than bincode (see
    /// [`ValueDescriptor::with_serde`]).
    pub const fn with_serde<S: Serde<T>>(self, serde: S) -> ListDescriptor<T, S> {
        ListDescriptor {
            name: self.name,
            ttl: self.ttl,
            serde,
            _t: PhantomData,
        }
    }
}

impl<T, S> ListDescriptor<T, S> {
    /// An element expires `ttl` of processing time after it was added.
    pub const fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

impl<T: 'static, S: Serde<T> + Clone> StateDescriptor for ListDescriptor<T, S> {
    type Handle<'a> = ListState<'a, T, S>;

    fn name(&self) -> &'static str {
        self.name
    }

    fn spec(&self) -> StateSpec {
        StateSpec {
            name: self.name,
            kind: StateKind::List,
            types: stored::<T, S>(&self.serde),
            ttl: self.ttl,
            type_id: TypeId::of::<(T, S)>(),
        }
    }

    fn expires(&self) -> bool {
        self.ttl.is_some()
    }

    fn identity(&self) -> (StateKind, TypeId) {
        (StateKind::List, TypeId::of::<(T, S)>())
    }

    fn handle<'a>(&self, place: Place<'a>) -> Result<ListState<'a, T, S>> {
        let tag = match self.ttl {
            Some(_) => MAP_TTL_TAG,
            None => MAP_TAG,
        };
        let mut prefix = Vec::new();
        keyed_key_into(
            &mut prefix,
            tag,
            place.group,
            place.node,
            self.name,
            place.key,
        )?;
        // The next sequence number lives in the value slot of the name,
        // which no other store of the processor can have; with a time to
        // live, it expires with the last element added (and so is dropped
        // by the storage too).
        let counter = match self.ttl {
            Some(_) => KEYED_TTL_TAG,
            None => KEYED_TAG,
        };
        keyed_key_into(
            place.buf,
            counter,
            place.group,
            place.node,
            self.name,
            place.key,
        )?;
        Ok(ListState::new(
            Access {
                backend: place.backend,
                now: place.now,
                name: self.name,
                ttl_ms: millis(self.ttl),
            },
            prefix,
            place.buf,
            self.serde.clone(),
        ))
    }
}

/// What a processor declares (see [`Processor::declare`](crate::Processor::declare)):
/// its stores, the side outputs it emits to, and the settings its state
/// depends on.
#[derive(Debug, Clone, Default)]
pub struct Declarations {
    states: Vec<StateSpec>,
    outputs: Vec<OutputSpec>,
    settings: Vec<(String, String)>,
    timer_input: Option<usize>,
}

impl Declarations {
    /// Declares the store `descriptor` describes.
    pub fn state<D: StateDescriptor>(&mut self, descriptor: &D) -> &mut Self {
        self.states.push(descriptor.spec());
        self
    }

    /// Declares that the processor emits to the side output `tag`.
    pub fn output<K: 'static, V: 'static>(&mut self, tag: &OutputTag<K, V>) -> &mut Self {
        self.outputs.push(tag.spec());
        self
    }

    /// Declares a setting the processor's state depends on (how many
    /// words a top list keeps): it goes into the pipeline's fingerprint, so
    /// that a restart with another value, which would read state kept for
    /// the old one, is refused, naming both.
    pub fn setting(&mut self, name: &str, value: impl fmt::Display) -> &mut Self {
        self.settings.push((name.to_owned(), value.to_string()));
        self
    }

    /// Says that the processor's event-time timers fire when the own
    /// watermark of the source's input `input` passes them (see
    /// [`Context::input_watermark`](crate::Context::input_watermark)),
    /// not only when the watermark of every input does: for timers that
    /// wait for that input alone (a join's records waiting for their
    /// table). Where that input's own watermark is not known (after another
    /// processor, in a run that shares its tasks), they follow the
    /// watermark, as every other processor's do.
    pub fn event_timers_follow(&mut self, input: usize) -> &mut Self {
        self.timer_input = Some(input);
        self
    }

    /// The input whose watermark the event-time timers follow, if one (see
    /// [`event_timers_follow`](Self::event_timers_follow)).
    pub fn timer_input(&self) -> Option<usize> {
        self.timer_input
    }

    /// The declared settings, as `(name, value)`.
    pub fn settings(&self) -> &[(String, String)] {
        &self.settings
    }

    /// The declared stores.
    pub fn states(&self) -> &[StateSpec] {
        &self.states
    }

    /// The declared side outputs.
    pub fn outputs(&self) -> &[OutputSpec] {
        &self.outputs
    }

    /// Refuses a bad declaration of `processor`: a name that is empty or
    /// too long, or declared twice with other types.
    pub fn check(&self, processor: &str) -> Result<()> {
        for (i, s) in self.states.iter().enumerate() {
            super::name_bytes(s.name)?;
            if let Some(other) = self.states[..i].iter().find(|o| o.name == s.name) {
                if other != s {
                    return Err(Error::Config(format!(
                        "processor `{processor}` declares the state `{}` twice, as {} and as {}; give each store a name of its own",
                        s.name,
                        other.signature(),
                        s.signature()
                    )));
                }
            }
        }
        for (i, o) in self.outputs.iter().enumerate() {
            if let Some(other) = self.outputs[..i].iter().find(|x| x.name == o.name) {
                if other != o {
                    return Err(Error::Config(format!(
                        "processor `{processor}` declares the side output `{}` twice, for {} and for {}; give each tag a name of its own",
                        o.name, other.types, o.types
                    )));
                }
            }
        }
        Ok(())
    }

    /// The declared store `name`, if it is of `kind` with the types of
    /// `type_id`: the check every handle passes.
    pub(crate) fn find_state(
        &self,
        name: &'static str,
        kind: StateKind,
        type_id: TypeId,
    ) -> Option<&StateSpec> {
        self.states.iter().find(|s| {
            (std::ptr::eq(s.name, name) || s.name == name) && s.kind == kind && s.type_id == type_id
        })
    }

    /// Whether a store called `name` of `kind` and `type_id`, with a time
    /// to live or not (`expires`), is declared: the check of a handle.
    pub(crate) fn declares(
        &self,
        name: &'static str,
        kind: StateKind,
        type_id: TypeId,
        expires: bool,
    ) -> bool {
        self.find_state(name, kind, type_id)
            .is_some_and(|s| s.ttl.is_some() == expires)
    }

    /// The declared side output `name`, if it carries `type_id`.
    pub(crate) fn has_output(&self, name: &'static str, type_id: TypeId) -> bool {
        self.outputs
            .iter()
            .any(|o| (std::ptr::eq(o.name, name) || o.name == name) && o.type_id() == type_id)
    }
}

/// The validated declarations of one processor node, shared by its workers.
pub type Declared = std::sync::Arc<Declarations>;
