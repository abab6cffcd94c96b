//! AWS JSON 1.1 errors: HTTP 400 for the client's mistakes and 500 for ours, with
//! `{"__type": "<ExceptionName>", "message": "..."}`: the same exception names the gRPC API
//! carries in `x-keyward-error`.

use crate::api::status::{ERROR_METADATA, exception_name};
use http::StatusCode;
use tonic::{Code, Status, metadata::MetadataValue};

/// A status with an exception name, built here for failures before any handler runs.
pub fn named(code: Code, exception: &'static str, message: &str) -> Status {
    let mut status = Status::new(code, message);
    status
        .metadata_mut()
        .insert(ERROR_METADATA, MetadataValue::from_static(exception));
    status
}

pub fn serialization(detail: &str) -> Status {
    named(
        Code::InvalidArgument,
        "SerializationException",
        &format!("the request body does not match the operation's input: {detail}"),
    )
}

pub fn unknown_operation(target: &str) -> Status {
    named(
        Code::InvalidArgument,
        "UnknownOperationException",
        &format!("unknown operation {target:?}"),
    )
}

/// The HTTP status and JSON body AWS clients expect for `status`.
pub fn response_parts(status: &Status) -> (StatusCode, String) {
    let http = match status.code() {
        Code::Internal | Code::Unknown | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let body = serde_json::json!({
        "__type": exception_name(status),
        "message": status.message(),
    });
    (http, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_400_with_the_exception_name() {
        let (http, body) = response_parts(&unknown_operation("secretsmanager.Nope"));
        assert_eq!(http, StatusCode::BAD_REQUEST);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["__type"], "UnknownOperationException");
        assert!(
            json["message"]
                .as_str()
                .unwrap()
                .contains("secretsmanager.Nope")
        );
        let (http, _) = response_parts(&Status::internal("bug"));
        assert_eq!(http, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
