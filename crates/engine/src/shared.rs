use std::sync::Arc;
use std::time::Duration;

use doorsync_access::{AccessPolicy, Mapping};
use doorsync_clock::SharedClock;
use doorsync_layout::Layout;
use doorsync_log::{EventLog, KeyValue};

/// What every shard and member of one engine reads.
pub(crate) struct Shared {
    pub(crate) log: Arc<dyn EventLog>,
    /// Checkpoints and member snapshots.
    pub(crate) kv: Arc<dyn KeyValue>,
    /// Partition leases and engine registrations.
    pub(crate) leases: Arc<dyn KeyValue>,
    pub(crate) clock: SharedClock,
    pub(crate) layout: Layout,
    pub(crate) policy: AccessPolicy,
    /// The mapping from the configuration; it wins over mappings that arrive as events.
    pub(crate) configured_mapping: Mapping,
    /// The digest of the configured mapping and the policy.
    pub(crate) configuration: [u8; 32],
    pub(crate) passivate_after: Duration,
    pub(crate) checkpoint_every: Duration,
    pub(crate) housekeeping_every: Duration,
}
