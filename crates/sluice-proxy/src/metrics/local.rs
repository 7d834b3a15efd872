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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hashbrown::Equivalent;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

/// Tells the families apart in the per-thread maps (tests make many).
static NEXT_FAMILY: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The children this thread has resolved, by family and labels.
    static RESOLVED: RefCell<hashbrown::HashMap<Series, Box<dyn Any>>> =
        RefCell::new(hashbrown::HashMap::new());
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

    /// Runs `f` on the child for `labels` (in the family's label order),
    /// which this thread looks up in its own map; the child's handle is
    /// not cloned, so the request touches only the child's atomics.
    ///
    /// # Panics
    /// If `labels` does not have one value per label name.
    pub(crate) fn with<R>(&self, labels: &[&str], f: impl FnOnce(&M) -> R) -> R {
        let family = self.shared.id;
        let series = SeriesRef { family, labels };
        RESOLVED.with(|resolved| {
            let mut resolved = resolved.borrow_mut();
            if let Some(metric) = resolved
                .get(&series)
                .and_then(|metric| metric.downcast_ref::<M>())
            {
                return f(metric);
            }
            let key: Box<[Box<str>]> = labels.iter().map(|l| Box::from(*l)).collect();
            let metric = self.shared.child(&key);
            let answer = f(&metric);
            resolved.insert(
                Series {
                    family,
                    labels: key,
                },
                Box::new(metric),
            );
            answer
        })
    }
}

/// A thread's key for a resolved child: its family and its labels.
#[derive(PartialEq, Eq, Hash)]
struct Series {
    family: u64,
    labels: Box<[Box<str>]>,
}

/// A [`Series`] borrowed from a request. Its fields and their order are
/// `Series`', and a slice of `&str` hashes as a slice of `Box<str>`, so the
/// derived hashes agree.
#[derive(Hash)]
struct SeriesRef<'a> {
    family: u64,
    labels: &'a [&'a str],
}

impl Equivalent<Series> for SeriesRef<'_> {
    fn equivalent(&self, key: &Series) -> bool {
        self.family == key.family
            && self.labels.len() == key.labels.len()
            && key.labels.iter().zip(self.labels).all(|(a, b)| **a == **b)
    }
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
    fn a_borrowed_series_hashes_as_its_key() {
        use std::hash::BuildHasher;
        let hasher = hashbrown::DefaultHashBuilder::default();
        let labels = ["chat_completions", "gpt", "openai/gpt-4o"];
        let series = SeriesRef {
            family: 7,
            labels: &labels,
        };
        let key = Series {
            family: 7,
            labels: labels.iter().map(|l| Box::from(*l)).collect(),
        };
        assert_eq!(hasher.hash_one(&series), hasher.hash_one(&key));
        assert!(series.equivalent(&key));
        assert!(!SeriesRef {
            family: 8,
            labels: &labels
        }
        .equivalent(&key));
    }

    #[test]
    fn label_sets_that_concatenate_alike_are_different_series() {
        let registry = Registry::new();
        let family = counters(&registry);
        family.with(&["a", "b/c"], |m| m.inc());
        family.with(&["a", "b/c"], |m| m.inc());
        family.with(&["ab", "/c"], |m| m.inc());
        let text = text(&registry);
        assert!(text.contains("c_total{a=\"a\",b=\"b/c\"} 2"), "{text}");
        assert!(text.contains("c_total{a=\"ab\",b=\"/c\"} 1"), "{text}");
        assert_eq!(text.matches("# TYPE c_total counter").count(), 1, "{text}");
    }

    #[test]
    fn threads_share_the_series_and_families_stay_apart() {
        let (one, two) = (Registry::new(), Registry::new());
        let (first, second) = (counters(&one), counters(&two));
        first.with(&["x", "y"], |m| m.inc());
        second.with(&["x", "y"], |m| m.inc());
        let on_other_thread = first.clone();
        std::thread::spawn(move || on_other_thread.with(&["x", "y"], |m| m.inc()))
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
