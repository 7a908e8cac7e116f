//! A simulator of the part of Kisi's REST API that doorsync uses, served over real HTTP on a
//! loopback port, for tests and the demo.
//!
//! It answers as Kisi documents (`reference/kisi-openapi-subset.yaml`): `KISI-LOGIN` keys, 200
//! on creates and 204 on PATCH and DELETE, `{"error", "code"}` and `{"errors": {...}}` bodies,
//! `X-Collection-Range` pagination, free-text `query` search, one role per (user, group), and
//! `created_by_id` set to the key's user. Kisi's limit of 5 requests per second per API user (all
//! its keys together) answers 429 with `Retry-After`, on the time of the [`SimOptions::clock`],
//! so a virtual clock drives it.
//!
//! Through the [`SimHandle`] a test seeds accounts and groups, acts as an operator in the
//! dashboard, asks whether a user can open a group's doors at an instant, counts calls, and
//! switches faults on and off: 5xx, latency, hanging requests, responses dropped after the
//! change was made, and random faults from a seed, which replay exactly.
#![forbid(unsafe_code)]

mod faults;
mod limiter;
mod server;
mod world;

pub use faults::{Fault, FaultRule, RandomFaults};
pub use server::{CallCounts, Exchange, KisiSimulator, SimError, SimHandle, SimOptions};
pub use world::{GroupAccess, KeyAccess, SimAssignment, SimGroup, SimUser};
