//! Auravita: patients keep their medical documents and share them with the doctors they choose.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod auth;
pub mod batch;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod files;
pub mod keys;
pub mod metrics;
pub mod notifications;
pub mod ratelimit;
pub mod sms;
pub mod stall;
pub mod storage;
pub mod text;
pub mod users;
pub mod web;
pub mod wire;

pub use app::{AppState, Server};
pub use config::Config;
