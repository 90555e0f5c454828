//! Image fetching for the card: an allowlist of hosts, a fetch thread, MIME sniffing.
//!
//! Only `https://` URLs on [`crate::config::CARD_IMAGE_HOSTS`] are ever fetched, each from the
//! base URL the config maps it to; anything else (YouTube or Twitch previews, odd asset strings)
//! gets the placeholder without a request. Fetches run on one thread per shard (started on first
//! use) with a tokio current-thread runtime and a hyper client (rustls with ring for https), so
//! DNS, connects and reads never touch a glommio executor. Each fetch has a deadline and a size
//! cap; no redirect is followed; only PNG, JPEG, GIF and WebP bodies are accepted.

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty};
use std::cell::OnceCell;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The fetch URL for a public image URL, or `None` when it must not be fetched.
pub fn resolve(url: &str, hosts: &[(String, String)]) -> Option<String> {
    let uri: Uri = url.parse().ok()?;
    if uri.scheme_str() != Some("https") {
        return None;
    }
    let authority = uri.authority()?;
    // Exactly the host: no user info, no port.
    let (_, base) = hosts.iter().find(|(host, _)| authority.as_str() == host)?;
    let path = uri.path_and_query()?.as_str();
    if !path.starts_with('/') || path.split(['/', '?']).any(|seg| seg == ".." || seg == ".") || path.contains('\\') {
        return None;
    }
    let mapped = format!("{base}{path}");
    let mapped_uri: Uri = mapped.parse().ok()?;
    let base_uri: Uri = base.parse().ok()?;
    // Whatever the path holds, the request goes to the configured base and nowhere else.
    (mapped_uri.authority() == base_uri.authority() && mapped_uri.scheme() == base_uri.scheme()).then_some(mapped)
}

/// The MIME type of an image body, from its first bytes.
pub fn sniff(body: &[u8]) -> Option<&'static str> {
    if body.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if body.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if body.starts_with(b"GIF87a") || body.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if body.len() >= 12 && &body[..4] == b"RIFF" && &body[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Why an image is not embedded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("timed out")]
    Timeout,
    #[error("status {0}")]
    Status(u16),
    #[error("larger than {0} bytes")]
    TooLarge(usize),
    #[error("not an image")]
    NotAnImage,
    #[error("{0}")]
    Transport(String),
    #[error("the fetch thread is gone")]
    Gone,
}

/// A fetched image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub mime: &'static str,
    pub bytes: Bytes,
}

struct Job {
    url: String,
    reply: oneshot::Sender<Result<Image, FetchError>>,
}

/// One shard's handle to its fetch thread.
pub struct Fetcher {
    timeout: Duration,
    max_bytes: usize,
    shard: usize,
    tx: OnceCell<Option<mpsc::UnboundedSender<Job>>>,
}

impl Fetcher {
    pub fn new(shard: usize, timeout: Duration, max_bytes: usize) -> Fetcher {
        Fetcher { timeout, max_bytes, shard, tx: OnceCell::new() }
    }

    fn sender(&self) -> Option<&mpsc::UnboundedSender<Job>> {
        self.tx.get_or_init(|| spawn_thread(self.shard, self.timeout, self.max_bytes)).as_ref()
    }

    /// Fetches `url` (already resolved against the allowlist) off the executor thread.
    pub async fn fetch(&self, url: String) -> Result<Image, FetchError> {
        let (reply, rx) = oneshot::channel();
        self.sender().ok_or(FetchError::Gone)?.send(Job { url, reply }).map_err(|_| FetchError::Gone)?;
        rx.await.unwrap_or(Err(FetchError::Gone))
    }
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

fn client(timeout: Duration) -> Result<Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(|e| e.to_string())?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https))
}

/// Starts the fetch thread; it ends when the shard drops its sender.
fn spawn_thread(shard: usize, timeout: Duration, max_bytes: usize) -> Option<mpsc::UnboundedSender<Job>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    let started = std::thread::Builder::new().name(format!("lantern-card-fetch-{shard}")).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return tracing::error!(error = %e, "card image fetcher cannot start"),
        };
        rt.block_on(async move {
            let client = match client(timeout) {
                Ok(c) => c,
                Err(e) => return tracing::error!(error = %e, "card image client cannot start"),
            };
            while let Some(job) = rx.recv().await {
                let client = client.clone();
                tokio::spawn(async move {
                    let result = match tokio::time::timeout(timeout, get(&client, &job.url, max_bytes)).await {
                        Ok(r) => r,
                        Err(_) => Err(FetchError::Timeout),
                    };
                    if let Err(e) = &result {
                        tracing::debug!(url = %job.url, error = %e, "card image not embedded");
                    }
                    let _ = job.reply.send(result);
                });
            }
        });
    });
    match started {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the card image fetch thread");
            None
        }
    }
}

async fn get(client: &Client, url: &str, max_bytes: usize) -> Result<Image, FetchError> {
    let uri: Uri = url.parse().map_err(|_| FetchError::Transport("bad url".into()))?;
    let req = http::Request::get(uri)
        .header(http::header::USER_AGENT, concat!("lantern-card/", env!("CARGO_PKG_VERSION")))
        .header(http::header::ACCEPT, "image/png,image/jpeg,image/gif,image/webp")
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Transport(e.to_string()))?;
    let res = client.request(req).await.map_err(|e| FetchError::Transport(e.to_string()))?;
    if res.status() != http::StatusCode::OK {
        return Err(FetchError::Status(res.status().as_u16()));
    }
    let declared = res.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max_bytes) {
        return Err(FetchError::TooLarge(max_bytes));
    }
    let mut body = res.into_body();
    let mut out = Vec::with_capacity(declared.unwrap_or(16 * 1024).min(max_bytes));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| FetchError::Transport(e.to_string()))?;
        if let Some(data) = frame.data_ref() {
            if out.len() + data.len() > max_bytes {
                return Err(FetchError::TooLarge(max_bytes));
            }
            out.extend_from_slice(data);
        }
    }
    let mime = sniff(&out).ok_or(FetchError::NotAnImage)?;
    Ok(Image { mime, bytes: Bytes::from(out) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<(String, String)> {
        vec![
            ("cdn.discordapp.com".into(), "http://127.0.0.1:9/cdn".into()),
            ("media.discordapp.net".into(), "https://media.discordapp.net".into()),
            ("i.scdn.co".into(), "https://i.scdn.co".into()),
        ]
    }

    #[test]
    fn only_allowlisted_hosts_resolve() {
        let h = hosts();
        assert_eq!(resolve("https://cdn.discordapp.com/avatars/1/a.png?size=128", &h).unwrap(), "http://127.0.0.1:9/cdn/avatars/1/a.png?size=128");
        assert_eq!(resolve("https://i.scdn.co/image/ab67", &h).unwrap(), "https://i.scdn.co/image/ab67");
        assert_eq!(
            resolve("https://media.discordapp.net/external/x/https/evil.example/a.png", &h).unwrap(),
            "https://media.discordapp.net/external/x/https/evil.example/a.png"
        );
        for bad in [
            "http://cdn.discordapp.com/avatars/1/a.png",
            "https://evil.example/a.png",
            "https://cdn.discordapp.com.evil.example/a.png",
            "https://user@cdn.discordapp.com/a.png",
            "https://cdn.discordapp.com:8443/a.png",
            "https://i.ytimg.com/vi/x/hqdefault_live.jpg",
            "https://static-cdn.jtvnw.net/previews-ttv/live_user_x.png",
            "https://cdn.discordapp.com/../etc/passwd",
            "https://cdn.discordapp.com/a\\b",
            "javascript:alert(1)",
            "data:image/png;base64,AAAA",
            "file:///etc/passwd",
        ] {
            assert_eq!(resolve(bad, &h), None, "{bad}");
        }
        // A path can never move the request to another host.
        let odd = resolve("https://media.discordapp.net//evil.example/@127.0.0.1:80/x", &h).unwrap();
        assert!(odd.starts_with("https://media.discordapp.net/"), "{odd}");
    }

    #[test]
    fn sniffs_real_types() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff(b"GIF89a..."), Some("image/gif"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"<html>"), None);
        assert_eq!(sniff(b"<svg xmlns=..."), None);
    }
}
