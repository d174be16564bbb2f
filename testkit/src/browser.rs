//! A headless Chromium, driven over WebDriver, for the console's tests: they sign in, click and
//! read pages as an operator would. WebDriver is plain HTTP and JSON (the W3C protocol), so
//! reqwest speaks it and no client crate is needed. The browser and driver are Debian's
//! `chromium` and `chromium-driver` packages; nothing is downloaded.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::{Value, json};

use crate::services::free_port;
use crate::wait::wait_until;

/// How the W3C protocol names an element reference in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where Debian's packages put the browser and its driver.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "chromedriver";

/// How long a page gets to show what a test waits for.
pub const PAGE_WAIT: Duration = Duration::from_secs(20);

/// A browser session; [`Browser::quit`] ends it (dropping it kills the driver too).
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    /// The driver's port.
    port: u16,
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless Chromium at 1280 × 900.
    pub async fn start() -> anyhow::Result<Browser> {
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "starting chromedriver (install Debian's chromium and chromium-driver: \
                 apt-get install chromium chromium-driver; scripts/test does so as root)",
            )?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let base = format!("http://127.0.0.1:{port}");
        let status = format!("{base}/status");
        let mut browser = Browser {
            driver,
            port,
            http,
            session: String::new(),
        };
        wait_until(
            Duration::from_secs(20),
            Duration::from_millis(50),
            "chromedriver to answer",
            || async {
                let ready = browser.http.get(&status).send().await.ok()?;
                let body: Value = ready.json().await.ok()?;
                body["value"]["ready"].as_bool().filter(|ready| *ready)
            },
        )
        .await?;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
            },
        }}});
        let created: Value = browser
            .http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await?
            .json()
            .await?;
        let id = created["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("no browser session: {created}"))?;
        browser.session = format!("{base}/session/{id}");
        Ok(browser)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.session);
        let mut request = self.http.request(method, &url);
        if !body.is_null() {
            request = request.json(&body);
        }
        let answer: Value = request.send().await?.json().await?;
        if let Some(error) = answer["value"]["error"].as_str() {
            bail!("{path}: {error}: {}", answer["value"]["message"]);
        }
        Ok(answer["value"].clone())
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, body).await
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.post("/url", json!({"url": url})).await.map(drop)
    }

    pub async fn set_size(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await
            .map(drop)
    }

    /// The first element `css` selects now, if any.
    pub async fn find(&self, css: &str) -> anyhow::Result<Option<Element>> {
        let found = self
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await?;
        Ok(found
            .as_array()
            .and_then(|all| all.first())
            .and_then(|first| first[ELEMENT_KEY].as_str())
            .map(|id| Element(id.to_string())))
    }

    /// How many elements `css` selects now.
    pub async fn count(&self, css: &str) -> anyhow::Result<usize> {
        let found = self
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await?;
        Ok(found.as_array().map_or(0, Vec::len))
    }

    /// Waits for an element `css` selects (the page renders after its data arrives).
    pub async fn wait_for(&self, css: &str) -> anyhow::Result<Element> {
        wait_until(
            PAGE_WAIT,
            Duration::from_millis(50),
            &format!("{css} on the page"),
            || async { self.find(css).await.ok().flatten() },
        )
        .await
    }

    /// Waits until the element `css` selects shows text that `wanted` accepts; returns it.
    pub async fn wait_for_text(
        &self,
        css: &str,
        what: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        wait_until(
            PAGE_WAIT,
            Duration::from_millis(50),
            &format!("{css} to show {what}"),
            || async {
                let element = self.find(css).await.map_err(|e| e.to_string())?;
                let Some(element) = element else {
                    return Err("absent".to_string());
                };
                let text = self.text(&element).await.map_err(|e| e.to_string())?;
                if wanted(&text) { Ok(text) } else { Err(text) }
            },
        )
        .await
    }

    pub async fn click(&self, element: &Element) -> anyhow::Result<()> {
        self.post(&format!("/element/{}/click", element.0), json!({}))
            .await
            .map(drop)
    }

    /// Clicks the element `css` selects, once it is there.
    pub async fn click_on(&self, css: &str) -> anyhow::Result<()> {
        let element = self.wait_for(css).await?;
        self.click(&element).await
    }

    /// Types `text` into the field `css` selects, after clearing it.
    pub async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let field = self.wait_for(css).await?;
        self.post(&format!("/element/{}/clear", field.0), json!({}))
            .await?;
        self.post(
            &format!("/element/{}/value", field.0),
            json!({"text": text}),
        )
        .await
        .map(drop)
    }

    pub async fn text(&self, element: &Element) -> anyhow::Result<String> {
        let text = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{}/text", element.0),
                Value::Null,
            )
            .await?;
        Ok(text.as_str().unwrap_or_default().to_string())
    }

    pub async fn attribute(&self, element: &Element, name: &str) -> anyhow::Result<Option<String>> {
        let value = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{}/attribute/{name}", element.0),
                Value::Null,
            )
            .await?;
        Ok(value.as_str().map(str::to_string))
    }

    /// Runs `script` (an async function body whose last argument is the callback) in the page.
    pub async fn run_async(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.post("/execute/async", json!({"script": script, "args": args}))
            .await
    }

    /// Saves what the browser shows as a PNG under the target directory's
    /// `console-screenshots/`; returns the file.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let shot = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().context("a screenshot")?)?;
        let dir = screenshot_dir()?;
        std::fs::create_dir_all(&dir)?;
        let file = dir.join(format!("{name}.png"));
        std::fs::write(&file, png)?;
        Ok(file)
    }

    /// Ends the browser session and the driver.
    pub async fn quit(self) {
        let _ = self.call(reqwest::Method::DELETE, "", Value::Null).await;
        // Dropping ends the driver.
    }
}

impl Drop for Browser {
    /// A test that failed half way leaves neither the driver nor its browser behind: the
    /// driver's `/shutdown` closes its browsers and exits it (asked over a plain socket, as a
    /// drop cannot await), then the driver is killed in case it could not answer.
    fn drop(&mut self) {
        let timeout = Duration::from_secs(5);
        if let Ok(mut socket) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            use std::io::{Read, Write};
            let _ = socket.set_read_timeout(Some(timeout));
            let _ = socket.write_all(
                b"GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            );
            let _ = socket.read(&mut [0u8; 256]);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where the console's screenshots go.
pub fn screenshot_dir() -> anyhow::Result<PathBuf> {
    Ok(crate::binaries::target_dir()?.join("console-screenshots"))
}

/// Whether `path` holds a PNG.
pub fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes.starts_with(b"\x89PNG\r\n\x1a\n"))
}
