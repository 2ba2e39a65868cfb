//! `deploy/kubernetes/` cannot be applied here (no cluster), so this checks
//! what a user relies on when they apply it: every manifest passes the
//! Kubernetes schema (`kubernetes-validate`, which the test command
//! installs), the kustomization lists every file, the manifests agree with
//! each other (labels, service account, ports, probes, mounted files) and
//! with sluice itself (it accepts the container's arguments, and the rules
//! in the ConfigMap load).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Every YAML document of every manifest, with its file name.
fn manifests() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for file in resource_files() {
        let text = std::fs::read_to_string(dir().join(&file)).expect("read");
        for doc in text.split("\n---\n") {
            let node = marked_yaml::parse_yaml(0, doc).expect("YAML");
            out.push((
                file.clone(),
                marked_yaml::from_node(&node).expect("plain YAML"),
            ));
        }
    }
    out
}

fn resource_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .expect("deploy/kubernetes")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    files.sort();
    files
}

fn one<'a>(all: &'a [(String, Value)], kind: &str) -> &'a Value {
    let found: Vec<&Value> = all
        .iter()
        .map(|(_, v)| v)
        .filter(|v| v["kind"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A number (the YAML reader keeps scalars as strings).
fn num(v: &Value) -> u64 {
    s(v).parse().unwrap_or_else(|_| panic!("not a number: {v}"))
}

/// The port of a `--flag=HOST:PORT` argument.
fn port_of(args: &[String], flag: &str) -> u64 {
    let prefix = format!("--{flag}=");
    let v = args
        .iter()
        .find_map(|a| a.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no --{flag}"));
    v.rsplit_once(':')
        .expect("HOST:PORT")
        .1
        .parse()
        .expect("port")
}

#[test]
fn every_manifest_passes_the_kubernetes_schema() {
    let out = Command::new("python3")
        .args(["-m", "kubernetes_validate", "-k", "1.31.0", "--strict"])
        .args(resource_files())
        .current_dir(dir())
        .output()
        .expect("run python3 -m kubernetes_validate (scripts/test.sh installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    // One line per resource, each passed.
    let passed = text.lines().filter(|l| l.contains(" passed ")).count();
    assert_eq!(passed, manifests().len(), "{text}");
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let text = std::fs::read_to_string(dir().join("kustomization.yaml")).expect("read");
    let node = marked_yaml::parse_yaml(0, &text).expect("YAML");
    let k: Value = marked_yaml::from_node(&node).expect("plain YAML");
    let listed: BTreeSet<String> = k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(s)
        .collect();
    let files: BTreeSet<String> = resource_files().into_iter().collect();
    assert_eq!(listed, files);
}

#[test]
fn the_manifests_agree_with_each_other_and_with_sluice() {
    let all = manifests();
    let deployment = one(&all, "Deployment");
    let spec = &deployment["spec"];
    assert_eq!(num(&spec["replicas"]), 3);
    let labels = &spec["selector"]["matchLabels"];
    assert_eq!(&spec["template"]["metadata"]["labels"], labels);
    let pod = &spec["template"]["spec"];
    let c = &pod["containers"][0];
    let args: Vec<String> = c["args"].as_array().expect("args").iter().map(s).collect();

    // The service account the pods run as is the one the RBAC binds, and
    // it may list and watch EndpointSlices.
    let sa = one(&all, "ServiceAccount");
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    let binding = one(&all, "ClusterRoleBinding");
    assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
    assert_eq!(
        binding["subjects"][0]["namespace"],
        sa["metadata"]["namespace"]
    );
    let role = one(&all, "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let rule = &role["rules"][0];
    assert_eq!(rule["apiGroups"][0], "discovery.k8s.io");
    assert_eq!(rule["resources"][0], "endpointslices");
    let verbs: BTreeSet<String> = rule["verbs"]
        .as_array()
        .expect("verbs")
        .iter()
        .map(s)
        .collect();
    assert_eq!(verbs, ["list", "watch"].map(String::from).into());

    // Ports: the container's named ports are what sluice binds; the
    // Service and the probes use them by name.
    let port = |name: &str| {
        c["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| num(&p["containerPort"]))
            .unwrap_or_else(|| panic!("no container port {name}"))
    };
    assert_eq!(port("xds"), port_of(&args, "xds"));
    assert_eq!(port("admin"), port_of(&args, "admin"));
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let service = one(&all, "Service");
    assert_eq!(&service["spec"]["selector"], labels);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "xds");
    let pdb = one(&all, "PodDisruptionBudget");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    assert!(num(&pdb["spec"]["minAvailable"]) < num(&spec["replicas"]));
    let policy = one(&all, "NetworkPolicy");
    assert_eq!(&policy["spec"]["podSelector"]["matchLabels"], labels);

    // Every file an argument names is under a mounted volume.
    let mounts: Vec<(String, String)> = c["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .map(|m| (s(&m["name"]), s(&m["mountPath"])))
        .collect();
    let volumes: BTreeSet<String> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| s(&v["name"]))
        .collect();
    for (name, _) in &mounts {
        assert!(volumes.contains(name), "mount of unknown volume {name}");
    }
    let files: Vec<&str> = args
        .iter()
        .filter_map(|a| a.split_once('=').map(|(_, v)| v))
        .filter(|v| v.starts_with("/etc/"))
        .collect();
    assert!(files.len() >= 6, "{files:?}");
    for f in files {
        assert!(
            mounts
                .iter()
                .any(|(_, path)| f.starts_with(&format!("{path}/"))),
            "{f} is on no mounted volume"
        );
    }

    // sluice accepts every argument (clap stops at --help only once all
    // the earlier flags parsed).
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(&args)
        .arg("--help")
        .output()
        .expect("run sluice");
    assert!(
        out.status.success(),
        "sluice refuses the container's arguments: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The rules in the ConfigMap load, under the name --rules gives.
    let cm = one(&all, "ConfigMap");
    let rules_arg = args
        .iter()
        .find_map(|a| a.strip_prefix("--rules="))
        .expect("--rules");
    let file_name = Path::new(rules_arg)
        .file_name()
        .expect("file")
        .to_string_lossy();
    let text = s(&cm["data"][file_name.as_ref()]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("rules.yaml");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("validate")
        .arg(&path)
        .output()
        .expect("run sluice validate");
    assert!(
        out.status.success(),
        "the ConfigMap's rules do not load: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
