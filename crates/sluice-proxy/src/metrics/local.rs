//! Labelled metric families without a lock shared by every request.
//!
//! `prometheus`' own `MetricVec` does not fit the request path twice over:
//! each `with_label_values` takes the vec's read lock (one cache line every
//! worker thread writes to), and it finds a child by a hash of the label
//! values written one after the other with no separator, so
//! `("a", "b/c")` and `("ab", "/c")` are the same series, and route names
//! may contain `/`.
//!
//! A [`Labelled`] family keeps its children in a map keyed by the label
//! values themselves, behind a mutex taken only when some thread meets a
//! label set for the first time, and by a scrape. Each thread keeps the
//! children it has resolved in its own map, so a request touches only that
//! map and then the child's atomics. The maps hold one entry per label set
//! seen, which the families' low-cardinality labels keep small.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

/// Tells the families apart in the per-thread maps (tests make many).
static NEXT_FAMILY: AtomicU64 = AtomicU64::new(0);

/// One child a thread has resolved: its family, its labels, the child.
struct Resolved {
    family: u64,
    labels: Box<[Box<str>]>,
    metric: Box<dyn Any>,
}

thread_local! {
    /// Resolved children by the hash of (family, labels).
    static RESOLVED: RefCell<HashMap<u64, Vec<Resolved>>> = RefCell::new(HashMap::new());
}

/// Makes the child of one label set: the family's metric with those labels
/// as its constant labels.
type MakeChild<M> = dyn Fn(HashMap<String, String>) -> prometheus::Result<M> + Send + Sync;

/// A labelled family of `M` (`IntCounter`, `Histogram`), registered as one
/// collector.
pub(crate) struct Labelled<M> {
    shared: Arc<Shared<M>>,
}

struct Shared<M> {
    id: u64,
    desc: Desc,
    names: Vec<String>,
    make: Box<MakeChild<M>>,
    children: Mutex<HashMap<Box<[Box<str>]>, M>>,
}

impl<M> Clone for Labelled<M> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M: Collector + Clone + 'static> Labelled<M> {
    /// The family `name` with label names `names`; `make` builds a child
    /// from its labels (as the metric's constant labels).
    pub(crate) fn new(
        name: &str,
        help: &str,
        names: &[&str],
        make: impl Fn(HashMap<String, String>) -> prometheus::Result<M> + Send + Sync + 'static,
    ) -> prometheus::Result<Self> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let desc = Desc::new(name.into(), help.into(), names.clone(), HashMap::new())?;
        Ok(Self {
            shared: Arc::new(Shared {
                id: NEXT_FAMILY.fetch_add(1, Ordering::Relaxed),
                desc,
                names,
                make: Box::new(make),
                children: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The child for `labels`, in the family's label order.
    ///
    /// # Panics
    /// If `labels` does not have one value per label name.
    pub(crate) fn with(&self, labels: &[&str]) -> M {
        let family = self.shared.id;
        let mut hasher = std::hash::DefaultHasher::new();
        family.hash(&mut hasher);
        labels.hash(&mut hasher);
        let hash = hasher.finish();
        RESOLVED.with(|resolved| {
            let mut resolved = resolved.borrow_mut();
            let bucket = resolved.entry(hash).or_default();
            let found = bucket
                .iter()
                .find(|r| r.family == family && same(&r.labels, labels))
                .and_then(|r| r.metric.downcast_ref::<M>());
            if let Some(metric) = found {
                return metric.clone();
            }
            let key: Box<[Box<str>]> = labels.iter().map(|l| Box::from(*l)).collect();
            let metric = self.shared.child(&key);
            bucket.push(Resolved {
                family,
                labels: key,
                metric: Box::new(metric.clone()),
            });
            metric
        })
    }
}

fn same(key: &[Box<str>], labels: &[&str]) -> bool {
    key.len() == labels.len() && key.iter().zip(labels).all(|(a, b)| **a == **b)
}

impl<M: Collector + Clone> Shared<M> {
    fn lock(&self) -> MutexGuard<'_, HashMap<Box<[Box<str>]>, M>> {
        // A poisoned map still holds valid children.
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The one child of `labels`, made on first use.
    fn child(&self, labels: &[Box<str>]) -> M {
        assert_eq!(
            labels.len(),
            self.names.len(),
            "{}: one value per label",
            self.desc.fq_name
        );
        let mut children = self.lock();
        if let Some(child) = children.get(labels) {
            return child.clone();
        }
        let pairs = self
            .names
            .iter()
            .cloned()
            .zip(labels.iter().map(|l| l.to_string()))
            .collect();
        // The name, help and label names were checked by `Desc::new`, and
        // any label value is valid.
        let child = (self.make)(pairs).expect("a valid child of a valid family");
        children.insert(labels.into(), child.clone());
        child
    }
}

impl<M: Collector + Clone + 'static> Collector for Labelled<M> {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.shared.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let children = self.shared.lock();
        let mut family: Option<MetricFamily> = None;
        for child in children.values() {
            for mut collected in child.collect() {
                match &mut family {
                    None => family = Some(collected),
                    Some(family) => family.mut_metric().extend(collected.take_metric()),
                }
            }
        }
        family.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{IntCounter, Opts, Registry};

    fn counters(registry: &Registry) -> Labelled<IntCounter> {
        let family = Labelled::new("c_total", "c", &["a", "b"], |labels| {
            IntCounter::with_opts(Opts::new("c_total", "c").const_labels(labels))
        })
        .expect("valid family");
        registry
            .register(Box::new(family.clone()))
            .expect("registered");
        family
    }

    fn text(registry: &Registry) -> String {
        let mut out = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut out,
        )
        .expect("encodes");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn label_sets_that_concatenate_alike_are_different_series() {
        let registry = Registry::new();
        let family = counters(&registry);
        family.with(&["a", "b/c"]).inc();
        family.with(&["a", "b/c"]).inc();
        family.with(&["ab", "/c"]).inc();
        let text = text(&registry);
        assert!(text.contains("c_total{a=\"a\",b=\"b/c\"} 2"), "{text}");
        assert!(text.contains("c_total{a=\"ab\",b=\"/c\"} 1"), "{text}");
        assert_eq!(text.matches("# TYPE c_total counter").count(), 1, "{text}");
    }

    #[test]
    fn threads_share_the_series_and_families_stay_apart() {
        let (one, two) = (Registry::new(), Registry::new());
        let (first, second) = (counters(&one), counters(&two));
        first.with(&["x", "y"]).inc();
        second.with(&["x", "y"]).inc();
        let on_other_thread = first.clone();
        std::thread::spawn(move || on_other_thread.with(&["x", "y"]).inc())
            .join()
            .expect("thread ran");
        assert!(text(&one).contains("c_total{a=\"x\",b=\"y\"} 2"));
        assert!(text(&two).contains("c_total{a=\"x\",b=\"y\"} 1"));
    }

    #[test]
    fn a_family_without_children_is_not_in_the_scrape() {
        let registry = Registry::new();
        counters(&registry);
        assert!(!text(&registry).contains("c_total"));
    }
}
