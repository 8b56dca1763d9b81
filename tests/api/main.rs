//! ZhilyeGO's HTTP test suite: the real application, real HTTP, real databases.
//! PostgreSQL-backed tests run when `ZHILEGO_TEST_PG_URL` is set (see helpers.rs).
mod helpers;
mod processes;

mod access;
mod admin;
mod analytics;
mod analytics_access;
mod analytics_oracle;
mod audit;
mod calendar_feeds;
mod catalogue;
mod chatbots;
mod cli;
mod concurrency;
mod contract;
mod crash;
mod daily_report;
mod docs_ui;
mod events;
mod faults;
mod guest_privacy;
mod history;
mod limits;
mod observability;
mod openapi;
mod ops;
mod ops_listeners;
mod payments;
mod projections;
mod relay;
mod reviews;
mod scan;
mod security_server;
mod telemetry_export;
mod workload;
