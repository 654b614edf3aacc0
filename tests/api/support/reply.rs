//! [`Reply`]: an HTTP response as tests read it — status, headers, JSON
//! body — and the parts of a GraphQL error they assert on.

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

/// A response: status, headers, JSON body (a JSON string when the body is
/// not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Reads a response.
    pub async fn from(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Self {
            status,
            headers,
            body,
        }
    }

    /// `errors[0].extensions.code`, if any (of the first answer of a batch).
    pub fn code(&self) -> Option<&str> {
        self.first()
            .pointer("/errors/0/extensions/code")
            .and_then(Value::as_str)
    }

    /// The answer, or a batch's first answer.
    pub fn first(&self) -> &Value {
        match &self.body {
            Value::Array(items) => items.first().unwrap_or(&Value::Null),
            body => body,
        }
    }

    /// A batch's answers: each operation's `errors[0].extensions.code`
    /// (panics unless the body is an array).
    pub fn batch_codes(&self) -> Vec<Option<String>> {
        self.body
            .as_array()
            .unwrap_or_else(|| panic!("a batch answer is an array: {}", self.body))
            .iter()
            .map(|a| {
                a.pointer("/errors/0/extensions/code")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect()
    }

    /// Every `extensions.code` in `errors`.
    pub fn codes(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errs| {
                errs.iter()
                    .filter_map(|e| e.pointer("/extensions/code").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `errors[0].message`, or `""`.
    pub fn message(&self) -> &str {
        self.body
            .pointer("/errors/0/message")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// `errors[0].extensions.field`: the input a validation error names.
    pub fn error_field(&self) -> Option<&str> {
        self.body
            .pointer("/errors/0/extensions/field")
            .and_then(Value::as_str)
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
