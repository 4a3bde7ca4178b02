//! [`Aggregate`]: a window's records folded into an accumulator.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Folds a window's values into an accumulator kept in state, and makes
/// the window's result of it. Session windows also merge accumulators.
pub trait Aggregate<V>: Clone + Send + Sync + 'static {
    /// What is kept per key and window.
    type Acc: Serialize + DeserializeOwned + Send + 'static;
    /// What the window emits.
    type Out: Send + 'static;
    /// The accumulator of an empty window.
    fn init(&self) -> Self::Acc;
    /// Adds one value.
    fn add(&self, acc: &mut Self::Acc, value: V);
    /// Adds `other`'s values to `acc` (two sessions became one).
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// The window's result.
    fn result(&self, acc: &Self::Acc) -> Self::Out;
}

/// Counts a window's records.
#[derive(Debug, Clone, Copy, Default)]
pub struct Count;

impl<V> Aggregate<V> for Count {
    type Acc = u64;
    type Out = u64;

    fn init(&self) -> u64 {
        0
    }

    fn add(&self, acc: &mut u64, _value: V) {
        *acc += 1;
    }

    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }

    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// Combines a window's values pairwise with a function, as
/// `Iterator::reduce` does: `Reduce::new(|a, b| a.max(b))`.
pub struct Reduce<V, F> {
    f: Arc<F>,
    _v: PhantomData<fn() -> V>,
}

impl<V, F> Clone for Reduce<V, F> {
    fn clone(&self) -> Self {
        Reduce {
            f: self.f.clone(),
            _v: PhantomData,
        }
    }
}

impl<V, F: Fn(V, V) -> V> Reduce<V, F> {
    /// Combines values with `f`.
    pub fn new(f: F) -> Self {
        Reduce {
            f: Arc::new(f),
            _v: PhantomData,
        }
    }
}

impl<V, F> Aggregate<V> for Reduce<V, F>
where
    V: Serialize + DeserializeOwned + Clone + Send + 'static,
    F: Fn(V, V) -> V + Send + Sync + 'static,
{
    type Acc = Option<V>;
    type Out = V;

    fn init(&self) -> Option<V> {
        None
    }

    fn add(&self, acc: &mut Option<V>, value: V) {
        *acc = Some(match acc.take() {
            Some(a) => (self.f)(a, value),
            None => value,
        });
    }

    fn merge(&self, acc: &mut Option<V>, other: Option<V>) {
        if let Some(o) = other {
            self.add(acc, o);
        }
    }

    fn result(&self, acc: &Option<V>) -> V {
        // A window is only ever made by a record: its accumulator holds one.
        acc.clone()
            .unwrap_or_else(|| unreachable!("a window without a record"))
    }
}
