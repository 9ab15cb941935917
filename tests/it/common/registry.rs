//! A real OCI registry for tests: Debian's `docker-registry` (the CNCF distribution registry)
//! on 127.0.0.1, storing in a temp dir, optionally behind htpasswd (HTTP basic auth). Its
//! access log gives the requests ferry sent. And `oras` (PyPI), an independent OCI client,
//! through `tests/fixtures/oras_client.py`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Registry {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    users: Vec<(String, String)>,
}

impl Registry {
    /// An anonymous registry storing under `dir/registry`.
    pub fn start(dir: &Path) -> Registry {
        Self::start_with(dir, &[], None)
    }

    /// A registry that lets in only `users` (user, password) with HTTP basic auth.
    pub fn start_with_users(dir: &Path, users: &[(&str, &str)]) -> Registry {
        Self::start_with(dir, users, None)
    }

    /// The registry again on `port`, with the data it had (a registry that came back).
    pub fn restart(mut self) -> Registry {
        self.stop();
        let users: Vec<(&str, &str)> = self
            .users
            .iter()
            .map(|(u, p)| (u.as_str(), p.as_str()))
            .collect();
        Self::start_with(&self.dir.clone(), &users, Some(self.port))
    }

    fn start_with(dir: &Path, users: &[(&str, &str)], port: Option<u16>) -> Registry {
        crate::common::prereq::require("docker-registry", "Debian package docker-registry");
        if !users.is_empty() {
            crate::common::prereq::require("htpasswd", "Debian package apache2-utils");
        }
        let dir = dir.join("registry");
        std::fs::create_dir_all(&dir).unwrap();
        let port = port.unwrap_or_else(|| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        let mut auth = String::new();
        if !users.is_empty() {
            let mut lines = String::new();
            for (user, password) in users {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("htpasswd (apache2-utils) runs");
                assert!(out.status.success());
                lines.push_str(String::from_utf8_lossy(&out.stdout).trim());
                lines.push('\n');
            }
            std::fs::write(dir.join("htpasswd"), lines).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: ferry-tests\n    path: {}\n",
                dir.join("htpasswd").display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: ferry-tests\n{auth}",
            dir.join("data").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("log"))
            .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry runs (Debian's docker-registry package; .ci/run installs it)");
        let registry = Registry {
            port,
            dir: dir.parent().unwrap().to_owned(),
            child: Some(child),
            users: users
                .iter()
                .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
                .collect(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while get(&format!("http://{}/v2/", registry.host())).is_none() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops it (a registry that went down).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The access log's lines: `METHOD PATH STATUS BYTES USER-AGENT`, oldest first.
    pub fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.join("registry/log")).unwrap_or_default();
        log.lines()
            .filter_map(|line| {
                let (_, rest) = line.split_once("] \"")?;
                let (request, rest) = rest.split_once("\" ")?;
                let mut request = request.split(' ');
                let (method, path) = (request.next()?, request.next()?);
                let mut fields = rest.split(' ');
                let (status, bytes) = (fields.next()?, fields.next()?);
                let agent = rest.rsplit('"').nth(1).unwrap_or("");
                Some(format!("{method} {path} {status} {bytes} {agent}"))
            })
            .collect()
    }

    /// The tags of `repository`, sorted.
    pub fn tags(&self, repository: &str) -> Vec<String> {
        let (status, _, body) = request(
            "GET",
            &format!("http://{}/v2/{repository}/tags/list", self.host()),
        )
        .expect("tags/list answers");
        if status == 404 {
            return Vec::new();
        }
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let mut tags: Vec<String> = value["tags"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// The manifest digest `repository:reference` resolves to, if any.
    pub fn digest(&self, repository: &str, reference: &str) -> Option<String> {
        let url = format!(
            "http://{}/v2/{repository}/manifests/{reference}",
            self.host()
        );
        let (status, headers) = head(&url)?;
        (status == 200).then(|| {
            headers
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("docker-content-digest:")
                        .map(|d| d.trim().to_owned())
                })
                .expect("a digest header")
        })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A plain HTTP/1.1 request to a loopback URL: (status, headers, body).
fn request(method: &str, url: &str) -> Option<(u16, String, Vec<u8>)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/')?;
    let mut stream = TcpStream::connect(host).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "{method} /{path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, head, answer[split + 4..].to_vec()))
}

/// `GET url` answered 200 or 401 (a registry that is up): (status, body).
pub fn get(url: &str) -> Option<(u16, Vec<u8>)> {
    request("GET", url)
        .filter(|(status, ..)| *status == 200 || *status == 401)
        .map(|(status, _, body)| (status, body))
}

fn head(url: &str) -> Option<(u16, String)> {
    request("HEAD", url).map(|(status, head, _)| (status, head))
}

/// Runs `tests/fixtures/oras_client.py ARGS…` (the `oras` library): its stdout.
#[track_caller]
pub fn oras(args: &[&str], envs: &[(&str, &str)]) -> String {
    crate::common::prereq::require_python("oras", "oras==0.2.43");
    let script = crate::common::crate_path("tests/fixtures/oras_client.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "oras {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
