//! The REST API as a client sees it: auth, errors, OpenAPI, metrics.

use anyhow::Result;
use coop_testkit::{Cloud, http_request};

const BIN: &str = env!("CARGO_BIN_EXE_coop");

#[test]
fn api_auth_errors_openapi_and_metrics() -> Result<()> {
    let cloud = Cloud::start(BIN, "api", 1)?;
    let peer = &cloud.peers[0];
    let addr = peer.api_addr();
    let token = peer.token()?;
    let auth = format!("Bearer {token}");

    // No token, a wrong token, a malformed header: 401 with a message.
    for headers in [
        vec![],
        vec![("Authorization", "Bearer not-a-token")],
        vec![("Authorization", "Basic abc")],
    ] {
        let resp = http_request(&addr, "GET", "/v1/peers", &headers, None)?;
        assert_eq!(resp.status, 401, "{}", resp.body);
        let body = resp.json()?;
        assert_eq!(body["error"], "unauthorized");
        assert!(!body["message"].as_str().unwrap_or_default().is_empty());
    }

    // Bad JSON and a wrong shape: 400 with a message naming the problem.
    let json_headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let resp = http_request(
        &addr,
        "POST",
        "/v1/invites",
        &json_headers,
        Some("{not json"),
    )?;
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(
        resp.json()?["message"]
            .as_str()
            .unwrap_or_default()
            .contains("invalid JSON")
    );
    let resp = http_request(
        &addr,
        "POST",
        "/v1/invites",
        &json_headers,
        Some(r#"{"ttl":5}"#),
    )?;
    assert_eq!(resp.status, 400, "{}", resp.body);
    let resp = http_request(
        &addr,
        "POST",
        "/v1/invites",
        &json_headers,
        Some(r#"{"ttl_secs":0}"#),
    )?;
    assert_eq!(resp.status, 400, "{}", resp.body);
    let resp = http_request(
        &addr,
        "PUT",
        "/v1/config/Bad%20Key",
        &json_headers,
        Some(r#"{"value":"x"}"#),
    )?;
    assert_eq!(resp.status, 400, "{}", resp.body);
    let resp = http_request(
        &addr,
        "POST",
        "/v1/peers/nobody/revoke",
        &json_headers,
        None,
    )?;
    assert_eq!(resp.status, 404, "{}", resp.body);
    let resp = http_request(&addr, "GET", "/v1/nothing-here", &json_headers, None)?;
    assert_eq!(resp.status, 404, "{}", resp.body);

    // A good request works.
    let resp = http_request(&addr, "GET", "/v1/status", &json_headers, None)?;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()?["health"], "ok");

    // The OpenAPI document describes the endpoints; it needs no token.
    let resp = http_request(&addr, "GET", "/v1/openapi.json", &[], None)?;
    assert_eq!(resp.status, 200);
    let doc = resp.json()?;
    for path in [
        "/v1/peers",
        "/v1/status",
        "/v1/invites",
        "/v1/peers/{peer}/revoke",
        "/v1/environments/{name}/restart",
        "/v1/networks",
        "/v1/networks/{name}",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }

    // Prometheus metrics.
    let resp = http_request(&addr, "GET", "/metrics", &[], None)?;
    assert_eq!(resp.status, 200);
    assert!(resp.body.contains("coop_raft_leader 1"), "{}", resp.body);
    assert!(
        resp.body.contains("coop_peers{state=\"up\"} 1"),
        "{}",
        resp.body
    );

    // The console page is served, and `coop console` points at it logged in.
    let resp = http_request(&addr, "GET", "/", &[], None)?;
    assert_eq!(resp.status, 200);
    assert!(resp.body.contains("/console/app.js"), "{}", resp.body);
    let csp = resp
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-security-policy"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let script = http_request(&addr, "GET", "/console/app.js", &[], None)?;
    assert_eq!(script.status, 200);
    assert!(
        script.body.contains("Authorization"),
        "the console's script"
    );
    let missing = http_request(&addr, "GET", "/console/nope.js", &[], None)?;
    assert_eq!(missing.status, 404);
    let console = peer.cli_json(&["console"])?;
    assert_eq!(
        console["url"],
        format!("http://{addr}/#token={token}"),
        "{console}"
    );

    // Users' tokens: created once, usable, listed without the secret, revoked.
    let alice = peer.cli_json(&["token", "create", "--user", "alice"])?;
    let alice_token = alice["token"].as_str().unwrap_or_default().to_string();
    let alice_auth = format!("Bearer {alice_token}");
    let resp = http_request(
        &addr,
        "GET",
        "/v1/status",
        &[("Authorization", &alice_auth)],
        None,
    )?;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let listed = peer.cli_json(&["token", "ls"])?;
    let listed = listed.as_array().cloned().unwrap_or_default();
    assert!(
        listed
            .iter()
            .any(|t| t["user"] == "alice" && t["id"] == alice["id"])
    );
    assert!(!serde_json::to_string(&listed)?.contains(&alice_token));
    let bad = peer.cli(&["token", "create", "--user", "Bad User"])?;
    assert!(!bad.status.success());
    let id = alice["id"].as_str().unwrap_or_default().to_string();
    let out = peer.cli(&["token", "rm", &id])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resp = http_request(
        &addr,
        "GET",
        "/v1/status",
        &[("Authorization", &alice_auth)],
        None,
    )?;
    assert_eq!(resp.status, 401, "revoked token still works: {}", resp.body);
    let out = peer.cli(&["token", "rm", &id])?;
    assert!(!out.status.success());

    // The CLI without a reachable agent: one clear line, non-zero exit.
    let out = peer.cli(&["--api", "127.0.0.1:1", "peers"])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach the coop API"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    Ok(())
}

#[test]
fn private_networks_get_their_own_subnets_and_refuse_bad_input() -> Result<()> {
    let cloud = Cloud::start(BIN, "networks", 1)?;
    let peer = &cloud.peers[0];
    let refused = |args: &[&str]| -> Result<String> {
        let out = peer.cli(args)?;
        anyhow::ensure!(!out.status.success(), "coop {args:?} succeeded");
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    };

    // From the pool, a /24 each; or the subnet asked for.
    let n1 = peer.cli_json(&["network", "create", "n1"])?;
    assert_eq!(n1["subnet"], "10.210.0.0/24", "{n1:#}");
    assert_eq!(n1["gateway"], "10.210.0.1", "{n1:#}");
    let n2 = peer.cli_json(&["network", "create", "n2", "--subnet", "10.30.0.0/24"])?;
    assert_eq!(n2["subnet"], "10.30.0.0/24", "{n2:#}");
    let n3 = peer.cli_json(&["network", "create", "n3"])?;
    assert_eq!(n3["subnet"], "10.210.1.0/24", "{n3:#}");

    // Overlaps, malformed subnets, taken and bad names: clear errors.
    let overlap = refused(&["network", "create", "n4", "--subnet", "10.210.0.128/25"])?;
    assert!(overlap.contains("overlaps network `n1`"), "{overlap}");
    let host_bits = refused(&["network", "create", "n4", "--subnet", "10.40.0.1/24"])?;
    assert!(host_bits.contains("10.40.0.0/24"), "{host_bits}");
    let malformed = refused(&["network", "create", "n4", "--subnet", "ten"])?;
    assert!(malformed.contains("is not a subnet"), "{malformed}");
    let taken = refused(&["network", "create", "n1"])?;
    assert!(taken.contains("already exists"), "{taken}");
    let bad_name = refused(&["network", "create", "Bad_Name"])?;
    assert!(bad_name.contains("network name"), "{bad_name}");

    // Listed and shown; removed; an unknown one is not found.
    let listed = peer.cli_json(&["network", "ls"])?;
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed:#}");
    let shown = peer.cli_json(&["network", "show", "n2"])?;
    assert_eq!(
        shown["members"].as_array().map(Vec::len),
        Some(0),
        "{shown:#}"
    );
    peer.cli_json(&["network", "rm", "n2"])?;
    let gone = refused(&["network", "rm", "n2"])?;
    assert!(gone.contains("no network named `n2`"), "{gone}");
    let unknown = refused(&["network", "show", "nope"])?;
    assert!(unknown.contains("no network named `nope`"), "{unknown}");
    // Its subnet is free again.
    let again = peer.cli_json(&["network", "create", "n5", "--subnet", "10.30.0.0/24"])?;
    assert_eq!(again["subnet"], "10.30.0.0/24", "{again:#}");
    Ok(())
}
