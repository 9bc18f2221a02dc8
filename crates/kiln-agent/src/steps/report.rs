//! The ready report: OneGate's `PUT /vm` with `READY=YES` (also what kiln's
//! metadata service takes), and cloud-init's phone_home form POST.

use std::time::Duration;

use super::{Done, Env};
use crate::context::Ready;
use crate::http::Client;

const TRIES: u32 = 3;

fn with_retries(mut send: impl FnMut() -> Result<u16, String>) -> Result<u16, String> {
    let mut last = String::new();
    for attempt in 0..TRIES {
        match send() {
            Ok(status) if (200..300).contains(&status) => return Ok(status),
            Ok(status) => last = format!("HTTP {status}"),
            Err(e) => last = e,
        }
        if attempt + 1 < TRIES {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Err(last)
}

fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn ready(env: &Env<'_>) -> Result<Done, String> {
    if env.context.ready.is_empty() {
        return Ok(Done::Skipped("no one to report to".into()));
    }
    env.network.wait_online();
    let client = Client::new(Duration::from_secs(5));
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for target in &env.context.ready {
        match target {
            Ready::OneGate {
                endpoint,
                token,
                vmid,
            } => {
                let url = format!("{endpoint}/vm");
                let mut headers: Vec<(&str, &str)> =
                    vec![("Content-Type", "application/x-www-form-urlencoded")];
                if let Some(token) = token {
                    headers.push(("X-ONEGATE-TOKEN", token));
                }
                if let Some(vmid) = vmid {
                    headers.push(("X-ONEGATE-VMID", vmid));
                }
                match with_retries(|| {
                    client
                        .request("PUT", &url, &headers, Some(b"READY=YES"))
                        .map(|r| r.status)
                }) {
                    Ok(_) => done.push(url),
                    Err(e) => failed.push(format!("{url}: {e}")),
                }
            }
            Ready::PhoneHome { url, fields } => {
                let url = url.replace("$INSTANCE_ID", &env.context.instance_id);
                let values: Vec<String> = fields
                    .iter()
                    .filter_map(|field| {
                        let value = match field.as_str() {
                            "instance_id" => Some(env.context.instance_id.clone()),
                            "hostname" => env.context.hostname.clone(),
                            "fqdn" => env
                                .context
                                .fqdn
                                .clone()
                                .or_else(|| env.context.hostname.clone()),
                            _ => None,
                        }?;
                        Some(format!("{field}={}", form_encode(&value)))
                    })
                    .collect();
                let body = values.join("&");
                let headers = [("Content-Type", "application/x-www-form-urlencoded")];
                match with_retries(|| {
                    client
                        .request("POST", &url, &headers, Some(body.as_bytes()))
                        .map(|r| r.status)
                }) {
                    Ok(_) => done.push(url),
                    Err(e) => failed.push(format!("{url}: {e}")),
                }
            }
        }
    }
    if failed.is_empty() {
        Ok(Done::Applied(done.join(", ")))
    } else {
        Err(failed.join("; "))
    }
}
