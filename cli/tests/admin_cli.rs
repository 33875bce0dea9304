//! The admin CLI end to end against a real `hookplane dev`: table and JSON
//! output, errors with their field violations and exit codes, `apply`'s
//! idempotence and diff, dry runs, examples run for real, replays, and
//! `events tail` following a real trigger.

#[path = "shared/dev_server.rs"]
#[allow(dead_code, reason = "each test binary uses its part of the shared harness")]
mod dev_server;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dev_server::DevServer;
use serde_json::Value;

/// A target API on loopback answering 200 `{}` to every request.
fn target() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
        }
    });
    format!("http://{address}")
}

struct Cli<'a> {
    server: &'a DevServer,
    dir: &'a std::path::Path,
}

impl Cli<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hookplane"));
        command
            .args(args)
            .args(["--server", &format!("http://{}", self.server.grpc), "--api-key-file"])
            .arg(&self.server.admin_key)
            .current_dir(self.dir)
            .env_remove("HOOKPLANE_API_KEY");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Stdout of a command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

fn connector_yaml(target: &str) -> String {
    format!(
        "displayName: Orders to ERP\n\
         auth: {{bearerToken: true}}\n\
         samplePayload: '{{\"id\": 42, \"name\": \"ann\"}}'\n\
         mappings:\n  - {{name: who, expression: 'upper($payload.name)'}}\n\
         perform:\n  method: POST\n  url: {target}/orders\n  body: [{{key: who, value: $processed.who}}]\n"
    )
}

#[test]
fn connectors_are_managed_tested_and_triggered_from_the_cli() {
    let work = tempfile::tempdir().unwrap();
    let server = DevServer::start(&work.path().join("data"));
    let cli = Cli { server: &server, dir: work.path() };
    let target = target();

    // Create: table output names the connector and shows its token once.
    let file = cli.write("orders.yaml", &connector_yaml(&target));
    let created = cli.ok(&["connectors", "create", "-f", &file]);
    assert!(created.starts_with("created con_"), "{created}");
    let token = created.lines().find_map(|l| l.strip_prefix("bearer: ")).expect("the token").to_owned();
    let listed = cli.json(&["connectors", "list"]);
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(listed[0]["displayName"], "Orders to ERP");
    let table = cli.ok(&["connectors", "list"]);
    assert!(table.lines().next().unwrap().starts_with("ID") && table.contains(&id), "{table}");

    // A dry run on the sample payload, and one that fails at its mapping.
    let run = cli.ok(&["connectors", "test", &id]);
    assert!(run.contains(&format!("perform:   POST {target}/orders")) && run.contains(r#"{"who":"ANN"}"#), "{run}");
    let failed = cli.run(&["connectors", "test", &id, "--payload", r#"{"name": 5}"#]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stdout).contains("failed in mappings at mappings[0].expression"));

    // Follow events live while the example trigger runs.
    let mut tail = cli.command(&["events", "tail", "-o", "json"]).stdout(Stdio::piped()).spawn().unwrap();
    let tail_out = BufReader::new(tail.stdout.take().unwrap());
    // The stream is open once the server has it; a trigger before that is
    // not streamed, so trigger until one line arrives.
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in tail_out.lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    let examples = cli.json(&["connectors", "examples", &id, "--language", "curl"]);
    let code = examples["examples"][0]["code"].as_str().unwrap().to_owned();
    let example = cli.write("example.sh", &code);
    let deadline = Instant::now() + Duration::from_secs(30);
    let streamed = loop {
        let output = Command::new("bash").arg(&example).env("HOOKPLANE_TOKEN", &token).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        if let Ok(line) = line_rx.recv_timeout(Duration::from_millis(500)) {
            break serde_json::from_str::<Value>(&line).unwrap();
        }
        assert!(Instant::now() < deadline, "events tail printed nothing");
    };
    let _ = tail.kill();
    let _ = tail.wait();
    assert_eq!(streamed["connectorId"], id.as_str());
    assert_eq!(streamed["status"], "EVENT_STATUS_COMPLETED");
    let event_id = streamed["id"].as_str().unwrap().to_owned();
    assert!(event_id.parse::<i64>().unwrap() < 1 << 53);
    assert!(cli.ok(&["events", "list", "--connector", &id]).contains("completed"));
    assert_eq!(cli.json(&["events", "get", &event_id])["id"], event_id.as_str());

    // A live run executes on dev's node, its event marked as a test.
    let live = cli.ok(&["connectors", "test", &id, "--live"]);
    assert!(live.starts_with("ran live on dev-node: completed") && live.contains("target answered: 200"), "{live}");

    // Replays: the current spec renders what was sent; a draft shows its change.
    assert!(cli.ok(&["events", "replay", &event_id]).contains("no changes"));
    let draft = cli.write("draft.yaml", &connector_yaml(&target).replace("/orders", "/v2/orders"));
    let replay = cli.ok(&["events", "replay", &event_id, "--draft", &draft]);
    assert!(replay.contains(&format!("url    {target}/orders  {target}/v2/orders")), "{replay}");

    // Secrets are read from stdin, never from the command line.
    let mut set =
        cli.command(&["secrets", "set", "ERP_KEY"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    set.stdin.take().unwrap().write_all(b"erp-secret\n").unwrap();
    assert!(set.wait().unwrap().success());
    assert_eq!(cli.json(&["secrets", "list"])[0]["name"], "ERP_KEY");
    assert!(cli.ok(&["nodes", "list"]).contains("dev-node"));
    let completions = Command::new(env!("CARGO_BIN_EXE_hookplane")).args(["completions", "bash"]).output().unwrap();
    assert!(String::from_utf8_lossy(&completions.stdout).contains("_hookplane()"));
}

#[test]
fn errors_print_their_violations_and_exit_with_codes_scripts_can_test() {
    let work = tempfile::tempdir().unwrap();
    let server = DevServer::start(&work.path().join("data"));
    let cli = Cli { server: &server, dir: work.path() };

    let missing = cli.run(&["connectors", "get", "con_missing"]);
    assert_eq!(missing.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("(NOT_FOUND)"));

    let bad = cli.write("bad.json", r#"{"displayName": "", "perform": {"url": "ftp://x"}}"#);
    let invalid = cli.run(&["connectors", "create", "-f", &bad]);
    assert_eq!(invalid.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&invalid.stderr);
    assert!(stderr.contains("\n  connector.display_name: is required\n"), "{stderr}");
    assert!(stderr.contains("\n  connector.auth: configure at least one method"), "one violation per line: {stderr}");

    let typo = cli.write("typo.json", r#"{"displayNmae": "x"}"#);
    let refused = cli.run(&["connectors", "create", "-f", &typo]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("displayNmae"));

    // The key from the environment, where no file is given.
    let denied = Command::new(env!("CARGO_BIN_EXE_hookplane"))
        .args(["connectors", "list", "--server", &format!("http://{}", server.grpc)])
        .env("HOOKPLANE_API_KEY", "hpk_not_a_key")
        .current_dir(work.path())
        .output()
        .unwrap();
    assert_eq!(denied.status.code(), Some(5), "{}", String::from_utf8_lossy(&denied.stderr));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("(UNAUTHENTICATED)"));

    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let down = Command::new(env!("CARGO_BIN_EXE_hookplane"))
        .args(["connectors", "list", "--server", &format!("http://{closed}"), "--api-key-file"])
        .arg(&server.admin_key)
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(6), "{}", String::from_utf8_lossy(&down.stderr));

    let usage = cli.run(&["connectors", "frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));

    // Every group reports the same way.
    for (args, code) in [
        (&["events", "get", "42"][..], 3),
        (&["secrets", "delete", "MISSING"][..], 3),
        (&["subscriptions", "get", "sub_missing"][..], 3),
        (&["keys", "delete", "key_missing"][..], 3),
        (&["events", "replay", "42"][..], 3),
        (&["events", "list", "--status", "lost"][..], 2),
    ] {
        let output = cli.run(args);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let org = cli.write("org.json", r#"{"displayName": "second"}"#);
    let not_operator = cli.run(&["orgs", "create", "-f", &org]);
    assert_eq!(not_operator.status.code(), Some(5), "an admin key may not create organizations");
}

#[test]
fn apply_creates_then_changes_nothing_then_shows_its_diff() {
    let work = tempfile::tempdir().unwrap();
    let server = DevServer::start(&work.path().join("data"));
    let cli = Cli { server: &server, dir: work.path() };
    let document = |url: &str| {
        format!(
            "connectors:\n  orders:\n    displayName: Orders\n    auth: {{bearerToken: true}}\n    perform: {{method: POST, url: \"{url}\"}}\n  \
             refunds:\n    displayName: Refunds\n    auth: {{bearerToken: true}}\n    perform: {{method: POST, url: \"https://erp.example.com/refunds\"}}\n"
        )
    };
    let file = cli.write("connectors.yaml", &document("https://erp.example.com/orders"));

    let planned = cli.ok(&["connectors", "apply", "-f", &file, "--dry-run"]);
    assert!(
        planned.contains("+ orders would be created") && planned.contains("(dry run: nothing changed)"),
        "{planned}"
    );
    assert_eq!(cli.json(&["connectors", "list"]), Value::Array(Vec::new()), "a dry run changes nothing");

    let first = cli.ok(&["connectors", "apply", "-f", &file]);
    assert!(
        first.contains("+ orders created (con_") && first.contains("2 to create, 0 to update, 0 unchanged"),
        "{first}"
    );
    assert!(first.contains("bearer: hpt_"), "new credentials are shown once: {first}");
    let again = cli.json(&["connectors", "apply", "-f", &file]);
    let actions: Vec<&str> =
        again["connectors"].as_array().unwrap().iter().map(|c| c["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["unchanged", "unchanged"], "applying twice changes nothing");

    std::fs::write(&file, document("https://erp.example.com/v2/orders")).unwrap();
    let changed = cli.ok(&["connectors", "apply", "-f", &file]);
    assert!(
        changed
            .contains("    perform.url: \"https://erp.example.com/orders\" -> \"https://erp.example.com/v2/orders\""),
        "{changed}"
    );
    assert!(changed.contains("0 to create, 1 to update, 1 unchanged"), "{changed}");
    let listed = cli.json(&["connectors", "list"]);
    let orders = listed.as_array().unwrap().iter().find(|c| c["displayName"] == "Orders").unwrap();
    assert_eq!(orders["perform"]["url"], "https://erp.example.com/v2/orders");
    assert_eq!(orders["labels"]["hookplane/name"], "orders");
    assert_eq!(listed.as_array().unwrap().len(), 2, "updated in place, not created again");

    // A field the entry no longer sets goes back to its default.
    let with_condition = document("https://erp.example.com/v2/orders").replacen(
        "    displayName: Orders\n",
        "    displayName: Orders\n    condition: '$payload.x == 1'\n",
        1,
    );
    std::fs::write(&file, with_condition).unwrap();
    cli.ok(&["connectors", "apply", "-f", &file]);
    let orders_of = |listed: Value| listed.as_array().unwrap().iter().find(|c| c["displayName"] == "Orders").cloned();
    assert_eq!(orders_of(cli.json(&["connectors", "list"])).unwrap()["condition"], "$payload.x == 1");
    std::fs::write(&file, document("https://erp.example.com/v2/orders")).unwrap();
    let removed = cli.ok(&["connectors", "apply", "-f", &file]);
    assert!(removed.contains("left to the server's defaults: condition"), "{removed}");
    assert_eq!(orders_of(cli.json(&["connectors", "list"])).unwrap().get("condition"), None);

    let shorter =
        cli.write("one.yaml", document("https://erp.example.com/v2/orders").split("  refunds:").next().unwrap());
    let stray = cli.ok(&["connectors", "apply", "-f", &shorter]);
    assert!(stray.contains("! refunds (con_") && stray.contains("left as it is"), "{stray}");
    let not_a_map = cli.write("list.yaml", "- displayName: x\n");
    assert_eq!(cli.run(&["connectors", "apply", "-f", &not_a_map]).status.code(), Some(1));
}
