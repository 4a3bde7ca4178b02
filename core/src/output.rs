//! Side outputs: typed handles to outputs beside a processor's main one
//! (late events, rejects, alerts), like Flink's `OutputTag<T>`.

use std::any::TypeId;
use std::marker::PhantomData;

use crate::Record;

/// A side output of `Record<K, V>`s called `name`. A processor declares the
/// tags it emits to (see [`Declarations::output`](crate::state::Declarations::output))
/// and emits with [`Context::output`](crate::Context::output); the pipeline
/// gives each tag a sink of exactly those types, checked when it compiles.
///
/// ```
/// # use weir_core::OutputTag;
/// const LATE: OutputTag<String, String> = OutputTag::new("late");
/// ```
pub struct OutputTag<K, V> {
    name: &'static str,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K, V> OutputTag<K, V> {
    /// The side output `name`, unique in its pipeline.
    pub const fn new(name: &'static str) -> Self {
        OutputTag {
            name,
            _t: PhantomData,
        }
    }

    /// Its name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<K: 'static, V: 'static> OutputTag<K, V> {
    /// The declaration the pipeline checks its sink against.
    pub fn spec(&self) -> OutputSpec {
        OutputSpec {
            name: self.name,
            types: std::any::type_name::<Record<K, V>>(),
            type_id: TypeId::of::<Record<K, V>>(),
        }
    }
}

/// A declared side output: its name and the record type it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    /// The tag's name.
    pub name: &'static str,
    /// `Record<K, V>` as Rust names it.
    pub types: &'static str,
    type_id: TypeId,
}

impl OutputSpec {
    /// The identity of `Record<K, V>`.
    pub fn type_id(&self) -> TypeId {
        self.type_id
    }
}
