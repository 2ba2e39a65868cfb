//! `serve::run` in-process, as the examples and benchmarks embed it: a
//! caller that drops its future (an aborted task) stops everything it
//! started, just as a resolved shutdown future does, so nothing is left
//! serving on the ports.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use sluice::serve::{self, ServeOptions};

async fn accepts(addr: SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_ok()
}

#[tokio::test]
async fn dropping_runs_future_stops_the_servers() {
    let rules = RulesFile::new("listeners: []\n");
    let xds: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let opts = ServeOptions {
        rules: rules.path.clone(),
        xds_addr: xds,
        admin_addr: admin,
        watch_interval: Duration::from_millis(50),
        state_dir: Some(rules.dir().to_path_buf()),
        ha: None,
        rollouts: Default::default(),
        guard: Default::default(),
        validate_with_envoy: None,
        xds_max_connection_age: None,
        xds_security: Default::default(),
    };
    let server = tokio::spawn(serve::run(opts, std::future::pending()));
    eventually("xDS and admin accept connections", || async {
        accepts(xds).await && accepts(admin).await
    })
    .await;

    server.abort();
    assert!(server.await.expect_err("aborted").is_cancelled());
    eventually("xDS and admin stop accepting", || async {
        !accepts(xds).await && !accepts(admin).await
    })
    .await;
}
