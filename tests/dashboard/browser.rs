//! Debian's chromium, headless, driven over WebDriver (chromedriver on a
//! loopback port it picks itself), through fantoccini.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

/// Generous: a loaded 2-core machine renders slowly; this is a deadline
/// for a condition, never a measurement.
pub const WAIT: Duration = Duration::from_secs(60);

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn chromedriver() -> PathBuf {
    std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| "chromedriver".into())
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// chromedriver's legacy `POST /session/{id}/se/log`: the browser
/// console's entries since the last call (fantoccini has no command for
/// it).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or("")))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(r#"{"type":"browser"}"#.into()),
        )
    }
}

impl Browser {
    pub async fn start() -> Browser {
        let mut driver = Command::new(chromedriver())
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver (apt-get install chromium chromium-driver)");
        let stdout = driver.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("chromedriver exited before listening")
                .expect("read");
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                break rest.trim_end_matches('.').parse::<u16>().expect("port");
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,1600",
                    "--no-first-run", "--no-default-browser-check",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("start a chromium session");
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("goto");
    }

    /// The console entries logged since the last call.
    pub async fn console(&self) -> Vec<serde_json::Value> {
        let v = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("browser log");
        v.as_array().cloned().unwrap_or_default()
    }

    /// Runs `script` (a function body) and returns its value.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client.execute(script, vec![]).await.expect("execute")
    }

    /// Waits until `script` returns a truthy value; returns it.
    pub async fn wait_js(&self, what: &str, script: &str) -> serde_json::Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.eval(script).await;
            let truthy = !matches!(&v, serde_json::Value::Null | serde_json::Value::Bool(false))
                && v != serde_json::json!("")
                && v != serde_json::json!(0);
            if truthy {
                return v;
            }
            if Instant::now() >= deadline {
                let page = self
                    .eval("return [document.querySelector('#conn')?.textContent, document.querySelector('#result')?.textContent];")
                    .await;
                panic!("timed out waiting for: {what} (page: {page})");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The element with this `aria-label` (first one).
    pub async fn labelled(&self, label: &str) -> Element {
        self.client
            .find(Locator::Css(&format!("[aria-label=\"{label}\"]")))
            .await
            .unwrap_or_else(|e| panic!("no element labelled {label:?}: {e}"))
    }

    /// The text of `#result`, once it says how a command ended.
    pub async fn result(&self) -> (String, String) {
        let v = self
            .wait_js(
                "a command's result",
                "const p = document.querySelector('#result'); return p.textContent.endsWith('…') ? null : [p.dataset.kind, p.textContent];",
            )
            .await;
        (
            v[0].as_str().unwrap_or_default().to_string(),
            v[1].as_str().unwrap_or_default().to_string(),
        )
    }

    /// Writes a PNG of the page to `target/dashboard-screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// `target/dashboard-screenshots` beside the build's other artifacts.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("dashboard-screenshots")
}
