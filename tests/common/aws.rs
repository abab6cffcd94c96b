//! Raw, signed AWS JSON 1.1 requests to a test server's AWS endpoint.
#![allow(dead_code)]

use super::Server;
use keyward::aws::signing::sign;
use std::io::{Read, Write};

/// `host:port` of a server's AWS endpoint.
pub fn aws_addr(server: &Server) -> String {
    server
        .aws
        .as_deref()
        .expect("AWS endpoint")
        .trim_start_matches("http://")
        .to_owned()
}

/// A raw HTTP/1.1 POST to the AWS endpoint: (status, body).
pub fn post(server: &Server, headers: &http::HeaderMap, body: &[u8]) -> (u16, serde_json::Value) {
    let url = server.aws.as_deref().unwrap();
    let authority = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    let mut request = format!(
        "POST / HTTP/1.1\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or_default())
}

/// Headers for a JSON 1.1 call to `target`, signed with `key` for `region` at `epoch`.
pub fn signed(
    server: &Server,
    target: &str,
    body: &[u8],
    key: (&str, &str),
    region: &str,
    epoch: i64,
) -> http::HeaderMap {
    let authority = server
        .aws
        .as_deref()
        .unwrap()
        .trim_start_matches("http://")
        .to_owned();
    let mut headers = http::HeaderMap::new();
    headers.insert("host", authority.parse().unwrap());
    headers.insert("x-amz-target", target.parse().unwrap());
    headers.insert(
        "content-type",
        "application/x-amz-json-1.1".parse().unwrap(),
    );
    let uri: http::Uri = format!("http://{authority}/").parse().unwrap();
    let service = if target.starts_with("TrentService") {
        "kms"
    } else {
        "secretsmanager"
    };
    sign(
        &http::Method::POST,
        &uri,
        &mut headers,
        body,
        key.0,
        key.1.as_bytes(),
        region,
        service,
        epoch,
    )
    .unwrap();
    headers
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `program` (the aws CLI, a Python client) set up as a user's shell would be: a key pair, the
/// region `local`, and no configuration files of the machine's.
pub fn tool(program: &str, key: (&str, &str)) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    command
        .env("AWS_ACCESS_KEY_ID", key.0)
        .env("AWS_SECRET_ACCESS_KEY", key.1)
        .env("AWS_DEFAULT_REGION", "local")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    command
}
