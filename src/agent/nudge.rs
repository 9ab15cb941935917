//! Telling the environment's other agents that a wave finished: the agent whose report
//! finishes its wave of a rollout (every host of the wave has reported) sends each URL of the
//! environment's `agent.trigger_urls` a signed push event, as the repository's hook does when
//! the branch moves, so that the hosts of the next wave read the statuses now instead of at
//! their next poll. Best effort, off the agent's loop: an agent that misses it still polls.

use std::time::Duration;

/// Where and how this agent nudges its environment's other agents.
pub struct Nudge {
    /// The secret this agent's own `POST /trigger` takes (its fleet's agents share it): the
    /// event is signed with it, as GitHub signs a webhook.
    secret: Option<String>,
}

impl std::fmt::Debug for Nudge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nudge")
            .field("signed", &self.secret.is_some())
            .finish()
    }
}

/// How long one agent may take to take the event.
const TIMEOUT: Duration = Duration::from_secs(2);

impl Nudge {
    pub fn new(secret: Option<String>) -> Nudge {
        Nudge { secret }
    }

    /// Sends `urls` the event that `host` finished its wave of `revision` on `env`, from a
    /// thread of its own: the agent's loop never waits on another host.
    pub fn wave_finished(&self, env: &str, host: &str, revision: &str, urls: &[String]) {
        if urls.is_empty() {
            return;
        }
        let event = serde_json::json!({
            "ref": format!("refs/ferry/hosts/{env}/{host}"),
            "after": revision,
            "pusher": { "name": host },
        });
        let body = serde_json::to_vec(&event).expect("events serialize");
        let mut headers = vec![("X-GitHub-Event", "push".to_owned())];
        if let Some(secret) = &self.secret {
            headers.push((
                "X-Hub-Signature-256",
                super::http::signature(secret.as_bytes(), &body),
            ));
        }
        let urls = urls.to_vec();
        let env = env.to_owned();
        std::thread::spawn(move || {
            let answers = crate::net::http::post_each(&urls, &body, &headers, TIMEOUT);
            for (url, answer) in urls.iter().zip(answers) {
                match answer {
                    Ok(status) if (200..300).contains(&status) => {}
                    Ok(status) => {
                        tracing::debug!("{env}: the agent at {url} answered HTTP {status}")
                    }
                    Err(e) => tracing::debug!("{env}: could not tell the agent at {url}: {e}"),
                }
            }
        });
    }
}
