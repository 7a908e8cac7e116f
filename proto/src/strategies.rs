//! Proptest generators for every message, shared by the crate's unit tests.

use proptest::prelude::*;

use crate::{
    BookingCancelled, BookingChanged, BookingId, CivilDate, Command, ContractChanged, ContractId, ContractRemoved,
    DeleteUser, EnsureUser, EntitlementId, EntitlementWithheld, Event, Failed, FloorPlanItem, FloorPlanItemId,
    FloorPlanItemKind, GrantApplied, GrantGroup, KisiAssignmentId, KisiGroupId, KisiUserId, KisiUserState,
    MappingChanged, MappingSource, MemberChanged, MemberId, MemberRemoved, MessageId, Outcome, PassChanged, PassId,
    PassProductId, PassRemoved, PassValidity, ResourceId, RestoreUser, RevokeGroup, Revoked, SuspendUser, Timestamp,
    UserAccessChanged, UserLinked,
};

fn timestamp() -> impl Strategy<Value = Timestamp> {
    any::<i64>().prop_map(Timestamp::from_unix_millis)
}

fn civil_date() -> impl Strategy<Value = CivilDate> {
    (0..=9999_i16, 1..=12_u8, 1..=31_u8)
        .prop_filter_map("a day that exists", |(year, month, day)| CivilDate::new(year, month, day).ok())
}

fn message_id() -> impl Strategy<Value = MessageId> {
    "[0-9a-f]{32}".prop_filter_map("a message id", |text| text.parse().ok())
}

fn member() -> impl Strategy<Value = MemberId> {
    any::<u64>().prop_map(MemberId)
}

fn group() -> impl Strategy<Value = KisiGroupId> {
    any::<u64>().prop_map(KisiGroupId)
}

fn pass_validity() -> impl Strategy<Value = PassValidity> {
    prop_oneof![
        (proptest::option::of(timestamp()), proptest::option::of(timestamp()))
            .prop_map(|(from, until)| PassValidity::Window { from, until }),
        (civil_date(), any::<String>()).prop_map(|(date, time_zone)| PassValidity::Day { date, time_zone }),
    ]
}

fn floor_plan_item() -> impl Strategy<Value = FloorPlanItem> {
    (any::<u64>(), prop_oneof![Just(FloorPlanItemKind::Desk), Just(FloorPlanItemKind::Office)])
        .prop_map(|(id, kind)| FloorPlanItem { id: FloorPlanItemId(id), kind })
}

fn mapping_source() -> impl Strategy<Value = MappingSource> {
    prop_oneof![
        any::<u64>().prop_map(|id| MappingSource::Resource(ResourceId(id))),
        any::<u64>().prop_map(|id| MappingSource::PassProduct(PassProductId(id))),
        any::<u64>().prop_map(|id| MappingSource::FloorPlanItem(FloorPlanItemId(id))),
    ]
}

fn entitlement_id() -> impl Strategy<Value = EntitlementId> {
    prop_oneof![
        any::<u64>().prop_map(|id| EntitlementId::Booking(BookingId(id))),
        any::<u64>().prop_map(|id| EntitlementId::Pass(PassId(id))),
        any::<u64>().prop_map(|id| EntitlementId::Contract(ContractId(id))),
    ]
}

pub(crate) fn any_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (member(), any::<String>(), any::<String>(), any::<bool>()).prop_map(|(member, email, name, active)| {
            Event::MemberChanged(MemberChanged { member, email, name, active })
        }),
        member().prop_map(|member| Event::MemberRemoved(MemberRemoved { member })),
        (member(), any::<u64>(), any::<u64>(), timestamp(), timestamp(), any::<bool>()).prop_map(
            |(member, booking, resource, starts_at, ends_at, tentative)| {
                Event::BookingChanged(BookingChanged {
                    member,
                    booking: BookingId(booking),
                    resource: ResourceId(resource),
                    starts_at,
                    ends_at,
                    tentative,
                })
            }
        ),
        (member(), any::<u64>()).prop_map(|(member, booking)| {
            Event::BookingCancelled(BookingCancelled { member, booking: BookingId(booking) })
        }),
        (member(), any::<u64>(), any::<u64>(), pass_validity(), any::<bool>()).prop_map(
            |(member, pass, product, validity, used_up)| {
                Event::PassChanged(PassChanged {
                    member,
                    pass: PassId(pass),
                    product: PassProductId(product),
                    validity,
                    used_up,
                })
            }
        ),
        (member(), any::<u64>())
            .prop_map(|(member, pass)| Event::PassRemoved(PassRemoved { member, pass: PassId(pass) })),
        (
            member(),
            any::<u64>(),
            timestamp(),
            proptest::option::of(timestamp()),
            proptest::option::of(timestamp()),
            any::<bool>(),
            prop::collection::vec(floor_plan_item(), 0..4),
        )
            .prop_map(|(member, contract, starts_at, ends_at, cancelled_at, active, spaces)| {
                Event::ContractChanged(ContractChanged {
                    member,
                    contract: ContractId(contract),
                    starts_at,
                    ends_at,
                    cancelled_at,
                    active,
                    spaces,
                })
            }),
        (member(), any::<u64>()).prop_map(|(member, contract)| {
            Event::ContractRemoved(ContractRemoved { member, contract: ContractId(contract) })
        }),
        (mapping_source(), proptest::option::of(group()))
            .prop_map(|(source, group)| Event::MappingChanged(MappingChanged { source, group })),
        (member(), entitlement_id(), any::<String>()).prop_map(|(member, entitlement, reason)| {
            Event::EntitlementWithheld(EntitlementWithheld { member, entitlement, reason })
        }),
    ]
}

pub(crate) fn any_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (member(), any::<String>(), any::<String>(), any::<u64>())
            .prop_map(|(member, email, name, basis)| Command::EnsureUser(EnsureUser { member, email, name, basis })),
        (member(), group(), proptest::option::of(timestamp()), proptest::option::of(timestamp()), any::<u64>())
            .prop_map(|(member, group, valid_from, valid_until, basis)| {
                Command::GrantGroup(GrantGroup { member, group, valid_from, valid_until, basis })
            }),
        (member(), group(), any::<u64>()).prop_map(|(member, group, basis)| Command::RevokeGroup(RevokeGroup {
            member,
            group,
            basis
        })),
        (member(), any::<u64>()).prop_map(|(member, basis)| Command::SuspendUser(SuspendUser { member, basis })),
        (member(), any::<u64>()).prop_map(|(member, basis)| Command::RestoreUser(RestoreUser { member, basis })),
        (member(), any::<u64>()).prop_map(|(member, basis)| Command::DeleteUser(DeleteUser { member, basis })),
    ]
}

pub(crate) fn any_outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        (member(), any::<u64>(), any::<bool>()).prop_map(|(member, kisi_user, created_by_doorsync)| {
            Outcome::UserLinked(UserLinked { member, kisi_user: KisiUserId(kisi_user), created_by_doorsync })
        }),
        (member(), group(), any::<u64>(), proptest::option::of(timestamp()), proptest::option::of(timestamp()))
            .prop_map(|(member, group, assignment, valid_from, valid_until)| {
                Outcome::GrantApplied(GrantApplied {
                    member,
                    group,
                    assignment: KisiAssignmentId(assignment),
                    valid_from,
                    valid_until,
                })
            }),
        (member(), group()).prop_map(|(member, group)| Outcome::Revoked(Revoked { member, group })),
        (
            member(),
            prop_oneof![Just(KisiUserState::Enabled), Just(KisiUserState::Suspended), Just(KisiUserState::Deleted)]
        )
            .prop_map(|(member, state)| Outcome::UserAccessChanged(UserAccessChanged { member, state })),
        (member(), message_id(), any::<String>(), any::<bool>()).prop_map(|(member, command, reason, permanent)| {
            Outcome::Failed(Failed { member, command, reason, permanent })
        }),
    ]
}
