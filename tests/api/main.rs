//! quire's integration tests: one binary, a fresh database per test, run on
//! SQLite and (with `QUIRE_TEST_DATABASE_URL`) on PostgreSQL. Shared helpers
//! live in `support/`; the feature files below import from it only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod auth;
mod authorization;
mod bootstrap;
mod cleanup;
mod cli;
mod console;
mod content;
mod content_bench;
mod dependencies;
mod error_codes;
mod events;
mod files;
mod http;
mod import;
mod keys;
mod limits;
mod propagation;
mod ratelimit;
mod readcache;
mod schedules;
mod schema;
mod search;
mod usage;
mod versions;
mod webhooks;
