//! Webhook targets must be public: a URL whose host is, or resolves to, a
//! loopback, private, link-local, unspecified (or shared, multicast,
//! broadcast) address is refused, on IPv4 and IPv6, unless
//! `QUIRE_WEBHOOK_ALLOW_PRIVATE=true`. The check runs when a webhook is
//! saved and again at every delivery, where the resolver the HTTP client
//! connects through refuses such addresses itself (no window between the
//! check and the connection for a DNS answer to change).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// Whether `ip` is an address webhooks may not reach.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let first = ip.segments()[0];
    // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
    if ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let o = ip.octets();
        return forbidden_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local fc00::/7 and link-local fe80::/10.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        // Site-local fec0::/10 (deprecated, still routed privately).
        || (first & 0xffc0) == 0xfec0
}

/// Checks a webhook URL: `http` or `https`, with a host, which must not be
/// or resolve to a forbidden address (unless `allow_private`). The error
/// says why, for a `BAD_USER_INPUT`.
pub async fn check_url(url: &str, allow_private: bool) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("url is not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("url must be an http:// or https:// URL".into());
    }
    let Some(host) = parsed.host_str().map(str::to_owned) else {
        return Err("url must name a host".into());
    };
    if allow_private {
        return Ok(parsed);
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs = resolve(&host, port).await?;
    if let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
        return Err(format!(
            "url's host {host} is or resolves to {}, a loopback, private, link-local or unspecified address; webhooks must reach a public address",
            bad.ip()
        ));
    }
    Ok(parsed)
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| format!("url's host {host} does not resolve: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("url's host {host} does not resolve"));
    }
    Ok(addrs)
}

/// The resolver of the delivery client: refuses a name when any of its
/// addresses is forbidden (unless private targets are allowed).
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolve(&host, 0).await?;
            if !allow_private {
                if let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
                    return Err(format!(
                        "{host} resolves to {}, which webhooks may not reach",
                        bad.ip()
                    )
                    .into());
                }
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Whether the URL's host is an IP literal that webhooks may not reach
/// (the resolver never sees literals).
pub fn literal_forbidden(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
        .filter(|ip| is_forbidden(*ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_forbidden_and_public_ones_are_not() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            let ip: IpAddr = bad.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(is_forbidden(ip), "{bad} should be refused");
        }
        for good in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = good.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(!is_forbidden(ip), "{good} should be allowed");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_without_the_network() {
        assert!(check_url("http://127.0.0.1:9/x", false).await.is_err());
        assert!(check_url("http://[::1]:9/x", false).await.is_err());
        assert!(check_url("http://127.0.0.1:9/x", true).await.is_ok());
        assert!(check_url("ftp://93.184.216.34/x", false).await.is_err());
        assert!(check_url("http://93.184.216.34/x", false).await.is_ok());
        assert!(check_url("not a url", false).await.is_err());
    }
}
