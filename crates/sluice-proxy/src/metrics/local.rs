//! Label lookups without a lock shared by every request.
//!
//! `MetricVec::with_label_values` hashes the labels and takes the vec's
//! read lock on every call: one cache line every worker thread writes to.
//! [`LocalVec`] keeps, per thread, the children that thread has already
//! resolved, so a request touches only its own thread's map and then the
//! child's atomics. The map holds one entry per label set a thread has seen,
//! which the families' low-cardinality labels keep small.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

/// Tells the families apart in the per-thread map (tests make many).
static NEXT_FAMILY: AtomicU64 = AtomicU64::new(0);

/// One resolved child: its family, its labels, the child itself.
struct Child {
    family: u64,
    labels: Box<[Box<str>]>,
    metric: Box<dyn Any>,
}

thread_local! {
    /// Resolved children by the hash of (family, labels).
    static CHILDREN: RefCell<HashMap<u64, Vec<Child>>> = RefCell::new(HashMap::new());
}

/// A labelled Prometheus family.
pub(crate) trait Labelled {
    type Child: Clone + 'static;

    /// The child for `labels`, through the family's own (locked) map.
    fn child(&self, labels: &[&str]) -> Self::Child;
}

impl Labelled for IntCounterVec {
    type Child = IntCounter;

    fn child(&self, labels: &[&str]) -> IntCounter {
        self.with_label_values(labels)
    }
}

impl Labelled for HistogramVec {
    type Child = Histogram;

    fn child(&self, labels: &[&str]) -> Histogram {
        self.with_label_values(labels)
    }
}

/// A labelled family whose children each thread looks up in its own map.
#[derive(Clone)]
pub(crate) struct LocalVec<V> {
    family: u64,
    vec: V,
}

impl<V: Labelled> LocalVec<V> {
    pub(crate) fn new(vec: V) -> Self {
        Self {
            family: NEXT_FAMILY.fetch_add(1, Ordering::Relaxed),
            vec,
        }
    }

    /// The child for `labels` (in the family's label order).
    pub(crate) fn with(&self, labels: &[&str]) -> V::Child {
        let mut hasher = std::hash::DefaultHasher::new();
        self.family.hash(&mut hasher);
        labels.hash(&mut hasher);
        let hash = hasher.finish();
        CHILDREN.with(|children| {
            let mut children = children.borrow_mut();
            let bucket = children.entry(hash).or_default();
            let found = bucket.iter().find(|child| {
                child.family == self.family
                    && child.labels.len() == labels.len()
                    && child.labels.iter().zip(labels).all(|(a, b)| **a == **b)
            });
            if let Some(metric) = found.and_then(|child| child.metric.downcast_ref::<V::Child>()) {
                return metric.clone();
            }
            let metric = self.vec.child(labels);
            bucket.push(Child {
                family: self.family,
                labels: labels.iter().map(|l| Box::from(*l)).collect(),
                metric: Box::new(metric.clone()),
            });
            metric
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{IntCounterVec, Opts};

    #[test]
    fn children_are_the_registered_ones_and_families_stay_apart() {
        let make =
            || IntCounterVec::new(Opts::new("c_total", "c"), &["a", "b"]).expect("valid metric");
        let (first, second) = (make(), make());
        let (one, two) = (LocalVec::new(first.clone()), LocalVec::new(second.clone()));
        one.with(&["x", "y"]).inc();
        one.with(&["x", "y"]).inc();
        one.with(&["xy", "z"]).inc();
        two.with(&["x", "y"]).inc();
        assert_eq!(first.with_label_values(&["x", "y"]).get(), 2);
        assert_eq!(first.with_label_values(&["xy", "z"]).get(), 1);
        assert_eq!(second.with_label_values(&["x", "y"]).get(), 1);
        // Another thread resolves its own child of the same series.
        let on_other_thread = one.clone();
        std::thread::spawn(move || on_other_thread.with(&["x", "y"]).inc())
            .join()
            .expect("thread ran");
        assert_eq!(first.with_label_values(&["x", "y"]).get(), 3);
    }
}
