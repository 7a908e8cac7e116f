//! What each of doorsync's processes may do on NATS, as nats-server permissions: the one place
//! these rules are written. `deploy/nats/values.yaml` and the tests' secured servers are checked
//! against (or made from) [`Role::permissions`].
//!
//! A process can only be refused what it does not need when everything it needs is known, so
//! the rules follow the client's JetStream API calls: a stream is checked or created at connect
//! (`STREAM.INFO`, `STREAM.CREATE`), read through ordered consumers and direct gets, consumed
//! through a durable consumer it acknowledges (`$JS.ACK`), and published to on its subjects with
//! the acknowledgement coming back on the process's own inbox; a key-value bucket is the stream
//! `KV_<bucket>` on the subjects `$KV.<bucket>.<key>`.

use std::collections::BTreeSet;
use std::fmt;

use doorsync_layout::Layout;

/// One kind of doorsync process, each with credentials of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// `doorsync ingest`: appends events.
    Ingest,
    /// `doorsync engine`: appends commands.
    Engine,
    /// `doorsync writer`: consumes commands, appends outcomes and dead letters.
    Writer,
    /// The operator's commands that read the log (`explain`, `replay --dry-run`, `dlq`): they
    /// read everything, and `dlq retry` appends a dead-lettered command again.
    Operator,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Ingest, Role::Engine, Role::Writer, Role::Operator];

    pub fn name(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Engine => "engine",
            Self::Writer => "writer",
            Self::Operator => "operator",
        }
    }

    /// Replies to this role's requests (publish acknowledgements, deliveries, API answers) come
    /// to subjects under this prefix, which only this role may subscribe to: with the shared
    /// `_INBOX.>`, any process could read the commands delivered to the writer.
    pub fn inbox_prefix(self, layout: &Layout) -> String {
        format!("_INBOX.{}.{}", layout.subjects.prefix(), self.name())
    }

    /// Everything this role needs on NATS and nothing more. `writer_consumer` is the writer's
    /// durable consumer of commands, which no other role may touch: one that pulled from it and
    /// acknowledged would keep commands (a revocation, say) from ever reaching Kisi.
    pub fn permissions(self, layout: &Layout, writer_consumer: &str) -> Permissions {
        let mut permissions = Permissions::for_inbox(&self.inbox_prefix(layout));
        let subjects = &layout.subjects;
        // Every process checks (and, on a fresh server, creates) every stream at connect, so
        // that they can start in any order; changing one is left to the role that appends to it.
        for stream in [&layout.events, &layout.commands, &layout.outcomes, &layout.dead_letters] {
            permissions.check_stream(stream);
        }
        match self {
            Self::Ingest => {
                permissions.append_to(&layout.events, &subjects.events_wildcard());
                // Its ledger, watermarks and parked records, and the lease of the active ingestor.
                permissions.use_bucket(&layout.ingest_bucket);
                // The names and zones of the Nexudus records its directory reads.
                for kind in ["location", "resource", "pass_product", "floor_plan_item"] {
                    permissions.use_keys(&layout.catalogue_bucket, &format!("{kind}.>"));
                }
            }
            Self::Engine => {
                permissions.append_to(&layout.commands, &subjects.commands_wildcard());
                for stream in [&layout.events, &layout.commands, &layout.outcomes, &layout.dead_letters] {
                    permissions.read_stream(stream);
                }
                permissions.keep_away_from_consumer(&layout.commands, writer_consumer);
                permissions.use_bucket(&layout.engine_bucket);
                // Engines list the leases to split the partitions between them, and hold their
                // own partition leases and registrations.
                permissions.list_bucket(&layout.leases_bucket);
                permissions.use_keys(&layout.leases_bucket, "lease.>");
                permissions.use_keys(&layout.leases_bucket, "engine.>");
                // The status page shows which dead letters an operator has dealt with.
                permissions.read_keys(&layout.writer_bucket, "dlq.>");
                // The status page shows names and local times.
                permissions.list_bucket(&layout.catalogue_bucket);
            }
            Self::Writer => {
                permissions.append_to(&layout.outcomes, &subjects.outcomes_wildcard());
                permissions.append_to(&layout.dead_letters, &subjects.dead_letters_wildcard());
                permissions.consume(&layout.commands, writer_consumer);
                permissions.use_bucket(&layout.writer_bucket);
                permissions.use_keys(&layout.leases_bucket, "writer.>");
                // The names of the Kisi groups it reads.
                permissions.use_keys(&layout.catalogue_bucket, "kisi_group.>");
            }
            Self::Operator => {
                for stream in [&layout.events, &layout.commands, &layout.outcomes, &layout.dead_letters] {
                    permissions.read_stream(stream);
                }
                permissions.keep_away_from_consumer(&layout.commands, writer_consumer);
                permissions.publish_allow.insert(subjects.commands_wildcard());
                permissions.list_bucket(&layout.writer_bucket);
                permissions.use_keys(&layout.writer_bucket, "dlq.>");
                // `explain` shows names and local times.
                permissions.list_bucket(&layout.catalogue_bucket);
            }
        }
        permissions
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Subjects a connection may and may not publish and subscribe to; a deny wins over an allow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish_allow: BTreeSet<String>,
    pub publish_deny: BTreeSet<String>,
    pub subscribe_allow: BTreeSet<String>,
    pub subscribe_deny: BTreeSet<String>,
}

const API: &str = "$JS.API";

impl Permissions {
    /// Nothing but the answers to the connection's own requests, under `inbox_prefix`.
    pub fn for_inbox(inbox_prefix: &str) -> Self {
        let mut permissions = Self::default();
        permissions.subscribe_allow.insert(format!("{inbox_prefix}.>"));
        permissions
    }

    /// Looks the stream up and creates it when missing. Creating an existing stream with
    /// another configuration fails, so this cannot change one.
    pub fn check_stream(&mut self, stream: &str) {
        self.publish_allow.insert(format!("{API}.STREAM.INFO.{stream}"));
        self.publish_allow.insert(format!("{API}.STREAM.CREATE.{stream}"));
    }

    /// Appends to `subjects` of `stream`, and updates the stream's configuration when doorsync
    /// asks for another (a new duplicate window, say).
    pub fn append_to(&mut self, stream: &str, subjects: &str) {
        self.check_stream(stream);
        self.publish_allow.insert(format!("{API}.STREAM.UPDATE.{stream}"));
        self.publish_allow.insert(subjects.to_owned());
    }

    /// Replays and follows the stream (ordered consumers with random names) and reads the last
    /// message on a subject. Only the create request that names its consumer in the subject is
    /// allowed: the unnamed `CONSUMER.CREATE.<stream>` takes the name from the request's body,
    /// which the denials of [`Self::keep_away_from_consumer`] cannot see, so a reader could
    /// change another role's durable consumer with it.
    pub fn read_stream(&mut self, stream: &str) {
        self.check_stream(stream);
        for subject in [
            format!("{API}.CONSUMER.CREATE.{stream}.>"),
            format!("{API}.CONSUMER.INFO.{stream}.*"),
            format!("{API}.CONSUMER.DELETE.{stream}.*"),
            format!("{API}.CONSUMER.MSG.NEXT.{stream}.*"),
            format!("{API}.DIRECT.GET.{stream}"),
            format!("{API}.DIRECT.GET.{stream}.>"),
            format!("{API}.STREAM.MSG.GET.{stream}"),
            format!("$JS.FC.{stream}.>"),
        ] {
            self.publish_allow.insert(subject);
        }
    }

    /// Reads the stream through the durable consumer `consumer` and acknowledges its deliveries.
    pub fn consume(&mut self, stream: &str, consumer: &str) {
        self.check_stream(stream);
        for subject in [
            format!("{API}.CONSUMER.CREATE.{stream}.{consumer}"),
            format!("{API}.CONSUMER.CREATE.{stream}.{consumer}.>"),
            format!("{API}.CONSUMER.INFO.{stream}.{consumer}"),
            format!("{API}.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            format!("$JS.ACK.{stream}.{consumer}.>"),
        ] {
            self.publish_allow.insert(subject);
        }
    }

    /// Refuses every operation on another role's durable consumer that [`Self::read_stream`]
    /// would otherwise allow: changing, deleting, pulling from or acknowledging it.
    pub fn keep_away_from_consumer(&mut self, stream: &str, consumer: &str) {
        for subject in [
            format!("{API}.CONSUMER.*.{stream}.{consumer}"),
            format!("{API}.CONSUMER.*.{stream}.{consumer}.>"),
            format!("{API}.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            format!("$JS.ACK.{stream}.{consumer}.>"),
        ] {
            self.publish_deny.insert(subject);
        }
    }

    /// Reads, writes and lists every key of the bucket.
    pub fn use_bucket(&mut self, bucket: &str) {
        self.list_bucket(bucket);
        self.use_keys(bucket, ">");
    }

    /// Opens the bucket (creating it when missing) and lists its keys, which reads every value
    /// too: listing is a consumer over the whole bucket.
    pub fn list_bucket(&mut self, bucket: &str) {
        self.open_bucket(bucket);
        let stream = format!("KV_{bucket}");
        self.read_stream(&stream);
        // The client lists keys through an unnamed consumer; a bucket has no durable consumer
        // to protect.
        self.publish_allow.insert(format!("{API}.CONSUMER.CREATE.{stream}"));
        self.read_keys(bucket, ">");
    }

    /// Reads and writes the keys matching `keys` (`>` for all, `writer.>` for those under
    /// `writer.`).
    pub fn use_keys(&mut self, bucket: &str, keys: &str) {
        self.read_keys(bucket, keys);
        self.publish_allow.insert(format!("$KV.{bucket}.{keys}"));
    }

    /// Reads the keys matching `keys` one by one.
    pub fn read_keys(&mut self, bucket: &str, keys: &str) {
        self.open_bucket(bucket);
        self.publish_allow.insert(format!("{API}.DIRECT.GET.KV_{bucket}.$KV.{bucket}.{keys}"));
    }

    /// The client reads the account's limits (`$JS.API.INFO`) before it creates a bucket.
    fn open_bucket(&mut self, bucket: &str) {
        self.check_stream(&format!("KV_{bucket}"));
        self.publish_allow.insert(format!("{API}.INFO"));
    }
}

#[cfg(test)]
mod tests {
    use doorsync_proto::Subjects;

    use super::*;

    fn layout() -> Layout {
        Layout::new(Subjects::new("doorsync", 16).unwrap_or_else(|error| panic!("{error}")))
    }

    fn allows(permissions: &BTreeSet<String>, subject: &str) -> bool {
        permissions.iter().any(|pattern| doorsync_log::subject_matches(pattern, subject))
    }

    fn may_publish(permissions: &Permissions, subject: &str) -> bool {
        allows(&permissions.publish_allow, subject) && !allows(&permissions.publish_deny, subject)
    }

    #[test]
    fn each_role_appends_only_its_own_messages() {
        let layout = layout();
        let [ingest, engine, writer, operator] = Role::ALL.map(|role| role.permissions(&layout, "writer"));
        let member = doorsync_proto::MemberId(7);
        let (event, command) = (layout.subjects.event(member), layout.subjects.command(member));
        let (outcome, dead_letter) = (layout.subjects.outcome(member), layout.subjects.dead_letter(member));
        assert!(may_publish(&ingest, &event) && may_publish(&ingest, &layout.subjects.mapping()));
        assert!(!may_publish(&ingest, &command) && !may_publish(&ingest, &outcome));
        assert!(may_publish(&engine, &command));
        assert!(
            !may_publish(&engine, &event) && !may_publish(&engine, &outcome) && !may_publish(&engine, &dead_letter)
        );
        assert!(may_publish(&writer, &outcome) && may_publish(&writer, &dead_letter));
        assert!(!may_publish(&writer, &command) && !may_publish(&writer, &event));
        assert!(
            may_publish(&operator, &command) && !may_publish(&operator, &event) && !may_publish(&operator, &outcome)
        );
    }

    #[test]
    fn only_the_writer_pulls_from_and_acknowledges_its_consumer() {
        let layout = layout();
        let pull = format!("$JS.API.CONSUMER.MSG.NEXT.{}.writer", layout.commands);
        let ack = format!("$JS.ACK.{}.writer.1.2.3.4.5", layout.commands);
        let delete = format!("$JS.API.CONSUMER.DELETE.{}.writer", layout.commands);
        let update = format!("$JS.API.CONSUMER.CREATE.{}.writer.doorsync.cmd.>", layout.commands);
        let writer = Role::Writer.permissions(&layout, "writer");
        assert!(may_publish(&writer, &pull) && may_publish(&writer, &ack) && may_publish(&writer, &update));
        for role in [Role::Engine, Role::Operator, Role::Ingest] {
            let permissions = role.permissions(&layout, "writer");
            for subject in [&pull, &ack, &delete, &update] {
                assert!(!may_publish(&permissions, subject), "{role} may publish {subject}");
            }
        }
        let engine = Role::Engine.permissions(&layout, "writer");
        let replay = format!("$JS.API.CONSUMER.MSG.NEXT.{}.Q1w2E3", layout.commands);
        assert!(may_publish(&engine, &replay), "the engine replays commands");
        let unnamed = format!("$JS.API.CONSUMER.CREATE.{}", layout.commands);
        assert!(!may_publish(&engine, &unnamed), "an unnamed create could name the writer's consumer in its body");
    }

    #[test]
    fn leases_are_written_only_by_the_role_that_holds_them() {
        let layout = layout();
        let key = |name: &str| format!("$KV.{}.{name}", layout.leases_bucket);
        let [ingest, engine, writer, operator] = Role::ALL.map(|role| role.permissions(&layout, "writer"));
        assert!(may_publish(&writer, &key("writer.default")) && !may_publish(&engine, &key("writer.default")));
        assert!(may_publish(&engine, &key("lease.3")) && !may_publish(&writer, &key("lease.3")));
        assert!(!may_publish(&ingest, &key("lease.3")) && !may_publish(&ingest, &key("writer.default")));
        assert!(!may_publish(&operator, &key("writer.default")));
        let writer_knowledge = format!("$KV.{}.member.7", layout.writer_bucket);
        assert!(may_publish(&writer, &writer_knowledge) && !may_publish(&operator, &writer_knowledge));
        assert!(may_publish(&operator, &format!("$KV.{}.dlq.12", layout.writer_bucket)));
    }

    #[test]
    fn the_catalogue_is_written_by_the_role_that_reads_each_kind_of_record() {
        let layout = layout();
        let key = |name: &str| format!("$KV.{}.{name}", layout.catalogue_bucket);
        let [ingest, engine, writer, operator] = Role::ALL.map(|role| role.permissions(&layout, "writer"));
        for nexudus in ["location.3", "resource.42", "pass_product.7", "floor_plan_item.9"] {
            assert!(may_publish(&ingest, &key(nexudus)) && !may_publish(&writer, &key(nexudus)), "{nexudus}");
        }
        assert!(may_publish(&writer, &key("kisi_group.12")) && !may_publish(&ingest, &key("kisi_group.12")));
        for reader in [&engine, &operator] {
            assert!(!may_publish(reader, &key("resource.42")) && !may_publish(reader, &key("kisi_group.12")));
            let list = format!("$JS.API.CONSUMER.CREATE.KV_{}", layout.catalogue_bucket);
            assert!(may_publish(reader, &list), "the status page and explain read every name");
        }
    }

    #[test]
    fn each_role_subscribes_only_to_its_own_inbox() {
        let layout = layout();
        for role in Role::ALL {
            let permissions = role.permissions(&layout, "writer");
            let own = format!("{}.abc.1", role.inbox_prefix(&layout));
            assert!(allows(&permissions.subscribe_allow, &own), "{role}");
            assert!(!allows(&permissions.subscribe_allow, "_INBOX.abc"), "{role}");
            for other in Role::ALL.into_iter().filter(|other| *other != role) {
                let theirs = format!("{}.abc.1", other.inbox_prefix(&layout));
                assert!(!allows(&permissions.subscribe_allow, &theirs), "{role} reads {other}'s inbox");
            }
        }
    }
}
