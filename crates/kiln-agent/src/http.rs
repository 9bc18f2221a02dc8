//! A small HTTP client with bounded waits, for metadata services and ready
//! reports (ureq: blocking, rustls with ring, no async runtime).

use std::time::Duration;

/// What came back: status, body and the `Server` header.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub server: Option<String>,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

pub struct Client {
    agent: ureq::Agent,
}

impl Client {
    /// Every request gives up after `timeout`, connecting included.
    pub fn new(timeout: Duration) -> Client {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(Duration::from_secs(2))))
            .http_status_as_error(false)
            .max_redirects(3)
            .build();
        Client {
            agent: ureq::Agent::new_with_config(config),
        }
    }

    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Reply, String> {
        let fail = |e: ureq::Error| format!("{method} {url}: {e}");
        let result = match (method, body) {
            ("GET", _) => {
                let mut request = self.agent.get(url);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.call()
            }
            (_, body) => {
                let mut request = match method {
                    "PUT" => self.agent.put(url),
                    _ => self.agent.post(url),
                };
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.send(body.unwrap_or_default())
            }
        };
        let mut response = result.map_err(fail)?;
        let server = response
            .headers()
            .get("server")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_vec().map_err(fail)?;
        Ok(Reply {
            status,
            body,
            server,
        })
    }

    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
        self.request("GET", url, headers, None)
    }
}
