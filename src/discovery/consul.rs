//! The Consul source (not implemented yet: the rules validator refuses
//! `sources.consul`, so this is never started).

use super::{Feeder, SourceOptions};
use crate::model::ConsulSource;

pub async fn run(feeder: Feeder, _src: ConsulSource, _service: String, _opts: SourceOptions) {
    feeder.fail("the consul source is not implemented yet".to_string());
}
