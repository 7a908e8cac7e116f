//! `doorsync replay --dry-run` and `doorsync reconcile --dry-run`: rebuilds every member from the
//! log, reads what Kisi holds, and prints what would change to make Kisi match (and which
//! assignments of `kisi.adopt_created_by` would be taken over), without writing anything.
//! Repairs are the writer's reconciler's job (`doorsync reconcile`). What would change is the
//! writer's to say ([`doorsync_writer::dry_run`]); this is the reading and the report.

use anyhow::bail;
use doorsync_node::Context;
use doorsync_node::operations::{self, DryRun};
use doorsync_writer::dry_run::{Change, Foreign, Plan, SeenUser};
use reqwest::Method;

use super::admin::Admin;
use super::table;

pub(crate) async fn replay(context: &Context, admin: &Admin, dry_run: bool) -> anyhow::Result<()> {
    if !dry_run {
        bail!(
            "doorsync replay only shows what would change (--dry-run); it never writes to Kisi. Repairs are made \
             by the writer's reconciler: run `doorsync reconcile` (with --confirm to carry out revocations the \
             mass-revocation guard held back)"
        );
    }
    print!("{}", dry_run_report(context, admin).await?);
    Ok(())
}

/// What a reconciliation would take over, change and remove; before moving over from Nexudus's
/// built-in Kisi integration, it shows what `kisi.adopt_created_by` would do.
pub(crate) async fn reconcile_dry_run(context: &Context, admin: &Admin) -> anyhow::Result<()> {
    print!("{}", dry_run_report(context, admin).await?);
    Ok(())
}

/// The running process's dry run when one holds the embedded log; else the members rebuilt from
/// the log (closed again before Kisi is read, which takes a while) and Kisi read from here.
async fn dry_run_report(context: &Context, admin: &Admin) -> anyhow::Result<String> {
    const PATH: &str = "/api/dry-run";
    let dry_run = match admin.ask_running_process(&context.config, Method::GET, PATH).await? {
        Some(body) => admin.read_json(PATH, &body)?,
        None => {
            let rebuilt =
                super::with_log(context, "replay", async |log, layout| Ok(operations::rebuild(log, layout).await?))
                    .await?;
            operations::dry_run(&rebuilt, &context.config, &context.clock).await?
        }
    };
    Ok(render(&dry_run))
}

/// The report: what was read, the changes as a table, the totals.
fn render(dry_run: &DryRun) -> String {
    let DryRun { plan, rules, at: now, .. } = dry_run;
    let mut text = format!(
        "Rebuilt {} from the log ({}, {}, {}).\nRead {} ({}) and {} from Kisi in {}, as of {now}.\n\n",
        table::count(dry_run.members, "member", "members"),
        table::count(as_count(dry_run.events), "event", "events"),
        table::count(as_count(dry_run.commands), "command", "commands"),
        table::count(as_count(dry_run.outcomes), "outcome", "outcomes"),
        table::count(dry_run.groups_read, "group", "groups"),
        table::count(dry_run.assignments_read, "assignment", "assignments"),
        table::count(dry_run.linked_users_read, "linked user", "linked users"),
        table::count(as_count(dry_run.requests), "request", "requests"),
    );
    if plan.changes.is_empty() {
        text.push_str("Kisi matches the log: nothing would change.\n");
    } else {
        let rows: Vec<Vec<String>> = plan.changes.iter().map(change_row).collect();
        text.push_str(&table::render(&["CHANGE", "MEMBER", "KISI USER", "GROUP", "IN KISI NOW", "WOULD BE"], &rows));
        let totals = totals(plan);
        text.push_str(&format!(
            "\nWould change: {}, {}, {}, {}; {}, {}, {}.\n",
            table::count(totals.users_to_link, "user to link or create", "users to link or create"),
            table::count(totals.assignments_to_create, "assignment to create", "assignments to create"),
            table::count(totals.windows_to_fix, "window to fix", "windows to fix"),
            table::count(totals.assignments_to_delete, "assignment to delete", "assignments to delete"),
            table::count(totals.users_to_suspend, "user to suspend", "users to suspend"),
            table::count(totals.users_to_restore, "user to restore", "users to restore"),
            table::count(totals.users_to_delete, "user to delete", "users to delete"),
        ));
    }
    if totals_adopted(plan) > 0 {
        text.push_str(&format!(
            "Taken over from kisi.adopt_created_by: {} ({} as they are, {} changed or removed above).\n",
            table::count(totals_adopted(plan), "assignment", "assignments"),
            plan.taken_over_as_they_are,
            totals(plan).adopted_to_change,
        ));
    }
    if !plan.foreign.is_empty() {
        let setting = if rules.touch_foreign_assignments { "on" } else { "off" };
        text.push_str(&format!(
            "\nLeft alone: {} someone else created (reconcile.touch_foreign_assignments is {setting}):\n",
            table::count(plan.foreign.len(), "assignment", "assignments"),
        ));
        let rows: Vec<Vec<String>> = plan.foreign.iter().map(foreign_row).collect();
        text.push_str(&table::render(
            &["MEMBER", "KISI USER", "GROUP", "ASSIGNMENT", "IN KISI NOW", "WOULD BE"],
            &rows,
        ));
    }
    text.push_str("\nDry run: nothing was written. The writer's reconciler repairs drift: `doorsync reconcile`.\n");
    text
}

fn totals_adopted(plan: &Plan) -> usize {
    plan.taken_over_as_they_are + totals(plan).adopted_to_change
}

/// How many changes of each kind a plan holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    users_to_link: usize,
    assignments_to_create: usize,
    windows_to_fix: usize,
    assignments_to_delete: usize,
    users_to_suspend: usize,
    users_to_restore: usize,
    users_to_delete: usize,
    /// Adopted creators' assignments among the windows to fix and the assignments to delete.
    adopted_to_change: usize,
}

fn totals(plan: &Plan) -> Totals {
    let mut totals = Totals::default();
    for change in &plan.changes {
        let count = match change {
            Change::LinkUser { .. } => &mut totals.users_to_link,
            Change::CreateAssignment { .. } => &mut totals.assignments_to_create,
            Change::FixWindow { .. } => &mut totals.windows_to_fix,
            Change::DeleteAssignment { .. } => &mut totals.assignments_to_delete,
            Change::SuspendUser { .. } => &mut totals.users_to_suspend,
            Change::RestoreUser { .. } => &mut totals.users_to_restore,
            Change::DeleteUser { .. } => &mut totals.users_to_delete,
        };
        *count += 1;
        if matches!(change, Change::FixWindow { adopted: true, .. } | Change::DeleteAssignment { adopted: true, .. }) {
            totals.adopted_to_change += 1;
        }
    }
    totals
}

fn as_count(number: u64) -> usize {
    usize::try_from(number).unwrap_or(usize::MAX)
}

fn change_row(change: &Change) -> Vec<String> {
    let none = || "-".to_owned();
    let (action, member, user, group, held, wanted) = match *change {
        Change::LinkUser { member } => {
            ("link or create user", member.to_string(), none(), none(), "no user".to_owned(), "enabled".to_owned())
        }
        Change::CreateAssignment { member, user, group, window } => (
            "create assignment",
            member.to_string(),
            user.map_or_else(|| "(new)".to_owned(), |user| user.to_string()),
            group.to_string(),
            "not a member".to_owned(),
            table::window(window),
        ),
        Change::FixWindow { member, user, group, assignment, held, wanted, adopted } => (
            if adopted { "take over, fix window" } else { "fix window" },
            member.to_string(),
            user.to_string(),
            group.to_string(),
            format!("{} (#{assignment})", table::window(held)),
            table::window(wanted),
        ),
        Change::DeleteAssignment { member, user, group, assignment, held, adopted } => (
            if adopted { "take over, delete" } else { "delete assignment" },
            member.map_or_else(|| "(none)".to_owned(), |member| member.to_string()),
            user.to_string(),
            group.to_string(),
            format!("{} (#{assignment})", table::window(held)),
            "not a member".to_owned(),
        ),
        Change::SuspendUser { member, user } => {
            ("suspend user", member.to_string(), user.to_string(), none(), "enabled".to_owned(), "suspended".to_owned())
        }
        Change::RestoreUser { member, user } => {
            ("restore user", member.to_string(), user.to_string(), none(), "suspended".to_owned(), "enabled".to_owned())
        }
        Change::DeleteUser { member, user, held } => {
            let held = if held == SeenUser::Suspended { "suspended" } else { "enabled" };
            ("delete user", member.to_string(), user.to_string(), none(), held.to_owned(), "deleted".to_owned())
        }
    };
    vec![action.to_owned(), member, user, group, held, wanted]
}

fn foreign_row(foreign: &Foreign) -> Vec<String> {
    vec![
        foreign.member.to_string(),
        foreign.user.to_string(),
        foreign.group.to_string(),
        foreign.assignment.to_string(),
        table::window(foreign.held),
        foreign.wanted.map_or_else(|| "not a member".to_owned(), table::window),
    ]
}

#[cfg(test)]
mod tests {
    use doorsync_access::Window;
    use doorsync_proto::{GrantApplied, KisiUserId, MemberId, Outcome};

    use super::*;
    use doorsync_proto::Timestamp;
    use doorsync_writer::dry_run::Rules;

    use crate::ops::testing::{Kisi, TempLog, append_command, append_event, append_outcome, booking, context, layout};
    use crate::ops::testing::{MINUTE, ensure, linked, member};

    /// The admin API at the discard port, where nothing listens: no running process holds the log.
    fn nobody_running(context: &Context) -> Admin {
        Admin::new(&context.config, Some("http://127.0.0.1:9")).unwrap()
    }

    /// A dry run of nothing read, planning `plan`.
    fn dry_run_of(plan: Plan) -> DryRun {
        DryRun {
            members: 0,
            events: 0,
            commands: 0,
            outcomes: 0,
            groups_read: 0,
            assignments_read: 0,
            linked_users_read: 0,
            requests: 0,
            at: Timestamp::from_unix_millis(0),
            rules: Rules::default(),
            plan,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dry_run_shows_what_would_change_in_kisi_and_writes_nothing() {
        let kisi = Kisi::start(50).await;
        let sim = &kisi.handle;
        let lounge = sim.add_group("Lounge");
        let users: Vec<KisiUserId> =
            (1..=3).map(|id| sim.add_user(&format!("m{id}@example.test"), &format!("Member {id}")).unwrap()).collect();
        let layout = layout();
        let store = TempLog::new(&layout);
        let context = context(&store.dir, Some(&kisi), &[(1, lounge)]);
        let now = context.clock.now().as_unix_millis();
        let minutes = |count: i64| Timestamp::from_unix_millis(now + count * MINUTE);
        let log = store.log.as_ref();
        // Members 1 and 2 have a booking of the lounge in an hour; member 3 holds nothing.
        for id in 1..=3 {
            append_event(log, &layout, minutes(-10), member(id)).await;
            append_outcome(log, &layout, minutes(-9), linked(id, users[id as usize - 1])).await;
        }
        for id in 1..=2 {
            append_event(log, &layout, minutes(-8), booking(id, id, 1, minutes(60), minutes(120))).await;
        }
        append_command(log, &layout, minutes(-9), ensure(3)).await;
        let applied = GrantApplied {
            member: MemberId(3),
            group: lounge,
            assignment: doorsync_proto::KisiAssignmentId(1),
            valid_from: None,
            valid_until: None,
        };
        append_outcome(log, &layout, minutes(-9), Outcome::GrantApplied(applied)).await;
        // Member 2's window was changed by hand; member 3 still holds what doorsync gave them.
        sim.add_assignment_as(Some(kisi.api_user), users[1], lounge, Some(minutes(0)), Some(minutes(10))).unwrap();
        sim.add_assignment_as(Some(kisi.api_user), users[2], lounge, None, None).unwrap();
        let before = sim.assignments();
        let _dir = store.close().await;

        let report = dry_run_report(&context, &nobody_running(&context)).await.unwrap();

        let row = |change: &str, member: u64| {
            report
                .lines()
                .any(|line| line.starts_with(change) && line.split_whitespace().any(|cell| cell == member.to_string()))
        };
        assert!(row("create assignment", 1), "{report}");
        assert!(row("fix window", 2), "{report}");
        assert!(row("delete assignment", 3), "{report}");
        assert!(row("suspend user", 3), "{report}");
        assert!(report.contains("Rebuilt 3 members from the log (5 events, 1 command, 4 outcomes)"), "{report}");
        assert!(
            report.contains(
                "Would change: 0 users to link or create, 1 assignment to create, 1 window to fix, 1 assignment to \
                 delete; 1 user to suspend, 0 users to restore, 0 users to delete."
            ),
            "{report}"
        );
        assert_eq!(sim.assignments(), before, "a dry run writes nothing");
        let calls = sim.calls();
        let writes: Vec<&String> = calls.by_endpoint.keys().filter(|call| !call.starts_with("GET")).collect();
        assert!(writes.is_empty(), "{writes:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dry_run_before_moving_over_shows_what_would_be_taken_over_changed_and_removed() {
        let kisi = Kisi::start(50).await;
        let sim = &kisi.handle;
        let lounge = sim.add_group("Lounge");
        let builtin = sim.add_api_user("nexudus-builtin@example.test", "Nexudus's Kisi integration").unwrap();
        // As the built-in integration leaves Kisi: users and assignments without windows.
        let member_1 = sim.add_user("m1@example.test", "Member 1").unwrap();
        sim.add_assignment_as(Some(builtin), member_1, lounge, None, None).unwrap();
        let former = sim.add_user("former@example.test", "Former member").unwrap();
        let stale = sim.add_assignment_as(Some(builtin), former, lounge, None, None).unwrap();
        let guest = sim.add_user("guest@example.test", "Owner's guest").unwrap();
        let by_hand = sim.add_assignment_as(Some(kisi.api_user), guest, lounge, None, None).unwrap();
        let layout = layout();
        let store = TempLog::new(&layout);
        let mut context = context(&store.dir, Some(&kisi), &[(1, lounge)]);
        context.config.kisi.adopt_created_by = vec!["nexudus-builtin@example.test".to_owned()];
        let now = context.clock.now().as_unix_millis();
        let minutes = |count: i64| Timestamp::from_unix_millis(now + count * MINUTE);
        append_event(store.log.as_ref(), &layout, minutes(-10), member(1)).await;
        append_event(store.log.as_ref(), &layout, minutes(-8), booking(1, 1, 1, minutes(60), minutes(120))).await;
        let before = sim.assignments();
        let _dir = store.close().await;

        let report = dry_run_report(&context, &nobody_running(&context)).await.unwrap();

        let row = |change: &str| report.lines().find(|line| line.starts_with(change)).unwrap_or_default().to_owned();
        assert!(row("link or create user").contains(" 1 "), "{report}");
        assert!(row("take over, fix window").contains(&member_1.to_string()), "{report}");
        assert!(row("take over, delete").contains(&format!("#{stale}")), "{report}");
        assert!(!report.contains(&format!("#{by_hand}")), "the owner's assignment for a guest stays: {report}");
        assert!(
            report
                .contains("Taken over from kisi.adopt_created_by: 2 assignments (0 as they are, 2 changed or removed"),
            "{report}"
        );
        assert_eq!(sim.assignments(), before, "a dry run writes nothing");
    }

    #[tokio::test]
    async fn without_dry_run_replay_refuses_and_points_at_the_reconciler() {
        let store = TempLog::new(&layout());
        let context = context(&store.dir, None, &[]);
        let error = replay(&context, &nobody_running(&context), false).await.unwrap_err().to_string();
        assert!(error.contains("--dry-run") && error.contains("doorsync reconcile"), "{error}");
    }

    #[test]
    fn the_report_lists_each_change_with_what_kisi_holds_and_what_it_would_be() {
        let plan = Plan {
            changes: vec![
                Change::LinkUser { member: MemberId(5) },
                Change::CreateAssignment {
                    member: MemberId(5),
                    user: None,
                    group: doorsync_proto::KisiGroupId(100),
                    window: Window { from: Some(Timestamp::from_unix_millis(0)), until: None },
                },
            ],
            foreign: vec![Foreign {
                member: MemberId(6),
                user: KisiUserId(16),
                group: doorsync_proto::KisiGroupId(100),
                assignment: doorsync_proto::KisiAssignmentId(61),
                held: Window { from: None, until: None },
                wanted: None,
            }],
            taken_over_as_they_are: 0,
        };
        let text = render(&dry_run_of(plan));
        let expected_rows = "\
CHANGE               MEMBER  KISI USER  GROUP  IN KISI NOW   WOULD BE
link or create user  5       -          -      no user       enabled
create assignment    5       (new)      100    not a member  1970-01-01T00:00:00.000Z .. open
";
        assert!(text.contains(expected_rows), "{text}");
        assert!(
            text.contains("Left alone: 1 assignment someone else created (reconcile.touch_foreign_assignments is off)")
        );
        assert!(text.contains("6       16         100    61          open .. open  not a member"), "{text}");
        assert!(
            text.ends_with(
                "Dry run: nothing was written. The writer's reconciler repairs drift: `doorsync reconcile`.\n"
            )
        );
    }

    #[test]
    fn the_totals_count_each_kind_of_change_and_the_adopted_creators_assignments_among_them() {
        let always = Window { from: None, until: None };
        let (user, group) = (KisiUserId(11), doorsync_proto::KisiGroupId(100));
        let assignment = doorsync_proto::KisiAssignmentId(31);
        let leftover = Change::DeleteAssignment { member: None, user, group, assignment, held: always, adopted: true };
        let plan = Plan { changes: vec![leftover], ..Plan::default() };
        assert_eq!(totals(&plan), Totals { assignments_to_delete: 1, adopted_to_change: 1, ..Totals::default() });

        let member = MemberId(1);
        let wanted = Window { from: Some(Timestamp::from_unix_millis(0)), until: None };
        let fixed = Change::FixWindow { member, user, group, assignment, held: always, wanted, adopted: true };
        let plan =
            Plan { changes: vec![Change::LinkUser { member }, fixed], foreign: vec![], taken_over_as_they_are: 1 };
        assert_eq!(
            totals(&plan),
            Totals { users_to_link: 1, windows_to_fix: 1, adopted_to_change: 1, ..Totals::default() }
        );
        assert_eq!(totals_adopted(&plan), 2);
    }
}
