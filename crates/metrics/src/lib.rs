//! What every role's Prometheus metrics are made of.
//!
//! A role does not update counters as it works: it keeps a status (which the status page and
//! `/api/status` show too), and its metrics are computed from the latest status at each scrape,
//! so the two can never disagree. [`Published`] holds that latest status and encodes it with the
//! role's own definitions (`metric_definitions.rs` in each role crate); [`gauge`], [`counter`]
//! and [`labelled_gauge`] / [`labelled_counter`] write one family each.
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeCounterValue, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// How a role writes its metrics from one status.
pub type Definitions<T> = fn(&T, &mut DescriptorEncoder) -> Result<(), fmt::Error>;

/// A role's latest status, encoded by its definitions at each scrape; nothing is reported before
/// the first [`Published::update`].
pub struct Published<T> {
    latest: Arc<Mutex<Option<T>>>,
    definitions: Definitions<T>,
}

impl<T> Clone for Published<T> {
    fn clone(&self) -> Self {
        Self { latest: Arc::clone(&self.latest), definitions: self.definitions }
    }
}

impl<T> fmt::Debug for Published<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Published").finish_non_exhaustive()
    }
}

impl<T: Clone + Send + Sync + 'static> Published<T> {
    /// Registers the metrics `definitions` write into `registry`.
    pub fn register(registry: &mut Registry, definitions: Definitions<T>) -> Self {
        let published = Self { latest: Arc::new(Mutex::new(None)), definitions };
        registry.register_collector(Box::new(published.clone()));
        published
    }

    pub fn update(&self, status: T) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(status);
    }
}

impl<T: Clone + Send + Sync + 'static> Collector for Published<T> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        // Cloned so that a slow scrape never holds the role's next update back.
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match latest {
            Some(status) => (self.definitions)(&status, &mut encoder),
            None => Ok(()),
        }
    }
}

/// A labelled gauge family that several roles of one process feed, each with its own series
/// (`dependency_up{dependency}`: Nexudus from the ingestor, Kisi from the writer). A family may
/// appear only once in a scrape, so roles that share one cannot each write it from their own
/// definitions: the process gathers their series and updates this. Nothing is reported before
/// the first [`SharedGauge::update`].
#[derive(Clone)]
pub struct SharedGauge {
    family: (&'static str, &'static str, &'static str),
    series: Arc<Mutex<Vec<(&'static str, u64)>>>,
}

impl fmt::Debug for SharedGauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedGauge").field("name", &self.family.0).finish_non_exhaustive()
    }
}

impl SharedGauge {
    /// Registers the family `(name, help, label)` in `registry`.
    pub fn register(registry: &mut Registry, family: (&'static str, &'static str, &'static str)) -> Self {
        let shared = Self { family, series: Arc::new(Mutex::new(Vec::new())) };
        registry.register_collector(Box::new(shared.clone()));
        shared
    }

    /// Replaces the series: one per `(label value, value)`.
    pub fn update(&self, series: Vec<(&'static str, u64)>) {
        *self.series.lock().unwrap_or_else(PoisonError::into_inner) = series;
    }
}

impl Collector for SharedGauge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let series = self.series.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if series.is_empty() {
            return Ok(());
        }
        labelled_gauge(&mut encoder, self.family, series)
    }
}

/// One gauge; a value beyond `i64` is reported as `i64::MAX`.
pub fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl TryInto<i64>,
) -> Result<(), fmt::Error> {
    let value = value.try_into().unwrap_or(i64::MAX);
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// One counter (`_total` is appended to its name).
pub fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeCounterValue,
) -> Result<(), fmt::Error> {
    ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

/// A gauge with one label: one series per `(label value, value)`.
pub fn labelled_gauge<V: ToString>(
    encoder: &mut DescriptorEncoder,
    (name, help, label): (&str, &str, &str),
    series: impl IntoIterator<Item = (V, u64)>,
) -> Result<(), fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, gauge) in series {
        let labels = [(label, value.to_string())];
        ConstGauge::new(i64::try_from(gauge).unwrap_or(i64::MAX)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A counter with one label: one series per `(label value, count)`.
pub fn labelled_counter<V: ToString>(
    encoder: &mut DescriptorEncoder,
    (name, help, label): (&str, &str, &str),
    series: impl IntoIterator<Item = (V, u64)>,
) -> Result<(), fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in series {
        let labels = [(label, value.to_string())];
        ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_gauge_writes_its_family_once_with_every_series_given() -> Result<(), fmt::Error> {
        let mut registry = Registry::with_prefix("site");
        let shared = SharedGauge::register(&mut registry, ("door_up", "Doors that open", "door"));
        assert!(!scrape(&registry)?.contains("site_door_up"), "nothing before the first update");

        shared.update(vec![("front", 1), ("back", 0)]);
        let scraped = scrape(&registry)?;
        let lines: Vec<&str> = scraped.lines().collect();
        assert!(lines.contains(&"site_door_up{door=\"front\"} 1"), "{scraped}");
        assert!(lines.contains(&"site_door_up{door=\"back\"} 0"), "{scraped}");
        assert_eq!(scraped.matches("# TYPE site_door_up gauge").count(), 1, "{scraped}");
        Ok(())
    }

    #[derive(Clone)]
    struct Status {
        doors: u64,
        by_floor: Vec<(u32, u64)>,
    }

    fn definitions(status: &Status, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        gauge(encoder, "doors", "Doors", status.doors)?;
        counter(encoder, "openings", "Openings", status.doors.saturating_mul(2))?;
        labelled_gauge(encoder, ("doors_by_floor", "Doors by floor", "floor"), status.by_floor.iter().copied())
    }

    fn scrape(registry: &Registry) -> Result<String, fmt::Error> {
        let mut scraped = String::new();
        prometheus_client::encoding::text::encode(&mut scraped, registry)?;
        Ok(scraped)
    }

    #[test]
    fn the_latest_status_is_encoded_at_each_scrape_and_nothing_before_the_first() -> Result<(), fmt::Error> {
        let mut registry = Registry::with_prefix("site");
        let published = Published::register(&mut registry, definitions);
        assert!(!scrape(&registry)?.contains("site_doors"), "nothing before the first status");

        published.update(Status { doors: 3, by_floor: vec![(1, 2), (2, 1)] });
        published.update(Status { doors: u64::MAX, by_floor: vec![(1, 4)] });
        let scraped = scrape(&registry)?;
        let lines: Vec<&str> = scraped.lines().collect();
        for line in [
            "site_doors 9223372036854775807",
            "site_openings_total 18446744073709551615",
            "site_doors_by_floor{floor=\"1\"} 4",
        ] {
            assert!(lines.contains(&line), "no line {line:?} in:\n{scraped}");
        }
        assert!(!scraped.contains("floor=\"2\""), "only the latest status: {scraped}");
        Ok(())
    }
}
