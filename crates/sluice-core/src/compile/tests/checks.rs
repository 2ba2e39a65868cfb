//! The invariant check and the errors `compile` returns.

use super::*;

#[test]
fn unknown_service_is_an_error() {
    let mut config = mk_simple();
    config.listeners_mut()[0].virtual_hosts[0].routes[0].action = mk_to("ghost");
    assert_eq!(
        compile(&config),
        Err(CompileError::UnknownService {
            listener: "http".into(),
            route: "all".into(),
            service: "ghost".into(),
        })
    );
}

#[test]
fn undeclared_subset_is_a_missing_cluster() {
    let mut config = mk_simple();
    config.listeners_mut()[0].virtual_hosts[0].routes[0].action =
        RouteAction::Backend(mk_backend("api", Some("nope")));
    assert_eq!(
        compile(&config),
        Err(CompileError::MissingCluster {
            group: FALLBACK.into(),
            route_config: "http".into(),
            cluster: "api~nope".into(),
        })
    );
}

#[test]
fn duplicate_listener_names_in_a_group_are_an_error() {
    let mut config = mk_simple();
    let mut dup = config.listeners[0].clone();
    dup.port = 10001;
    dup.groups = Some(vec!["edge".into()]);
    config.listeners_mut().push(dup);
    // The fallback only has the first; `edge` has both.
    assert_eq!(
        compile(&config),
        Err(CompileError::DuplicateName {
            group: "edge".into(),
            kind: TypeUrl::Listener,
            name: "http".into(),
        })
    );
}

#[test]
fn out_of_range_duration_is_an_error() {
    let mut config = mk_simple();
    config.listeners_mut()[0].virtual_hosts[0].routes[0].timeout =
        Some(Duration::from_secs(u64::MAX));
    assert!(matches!(
        compile(&config),
        Err(CompileError::DurationOutOfRange {
            seconds: u64::MAX,
            ..
        })
    ));
}

/// Typed resources of `mk_simple`, for tampering with.
fn mk_resources() -> GroupResources {
    let config = mk_simple();
    let api = &config.services["api"];
    let mut res = GroupResources::default();
    for backend in crate::compile::cluster::backends_of(api) {
        res.clusters
            .push(crate::compile::cluster::cluster(api, &backend).expect("cluster"));
        res.endpoints.push(crate::compile::eds::load_assignment(
            api,
            &backend,
            &mut Default::default(),
        ));
    }
    let l = &config.listeners[0];
    let filters = crate::compile::route::EffectiveFilters::of(l);
    res.listeners
        .push(crate::compile::listener::listener(l, &filters).expect("listener"));
    res.routes.push(
        crate::compile::route::route_configuration(l, &filters, &mut Default::default())
            .expect("routes"),
    );
    res
}

#[test]
fn untampered_resources_pass() {
    assert_eq!(
        crate::compile::check::invariants("g", &mk_resources()),
        Ok(())
    );
}

#[test]
fn eds_cluster_without_load_assignment_fails() {
    let mut res = mk_resources();
    res.endpoints.retain(|cla| cla.name != "api~v2");
    assert_eq!(
        crate::compile::check::invariants("g", &res),
        Err(CompileError::MissingEndpoints {
            group: "g".into(),
            cluster: "api~v2".into(),
        })
    );
}

#[test]
fn listener_without_route_configuration_fails() {
    let mut res = mk_resources();
    res.routes.clear();
    assert_eq!(
        crate::compile::check::invariants("g", &res),
        Err(CompileError::MissingRouteConfig {
            group: "g".into(),
            listener: "http".into(),
            route_config: "http".into(),
        })
    );
}

#[test]
fn duplicate_cluster_fails() {
    let mut res = mk_resources();
    let dup = res.clusters[0].clone();
    res.clusters.push(dup);
    assert_eq!(
        crate::compile::check::invariants("g", &res),
        Err(CompileError::DuplicateName {
            group: "g".into(),
            kind: TypeUrl::Cluster,
            name: "api".into(),
        })
    );
}

#[test]
fn domain_in_two_virtual_hosts_fails() {
    let mut config = mk_simple();
    let vh = config.listeners[0].virtual_hosts[0].clone();
    config.listeners_mut()[0].virtual_hosts.push(VirtualHost {
        name: "again".into(),
        ..vh
    });
    assert_eq!(
        compile(&config),
        Err(CompileError::DuplicateDomain {
            group: FALLBACK.into(),
            route_config: "http".into(),
            domain: "*".into(),
        })
    );
}
