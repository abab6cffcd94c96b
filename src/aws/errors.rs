//! AWS JSON 1.1 errors: HTTP 400 for the client's mistakes and 500 for ours, with
//! `{"__type": "<ExceptionName>", "message": "..."}`: the same exception names the gRPC API
//! carries in `x-keyward-error`.

use crate::api::status::{exception, status};
use crate::outcome::Exception;
use http::StatusCode;
use tonic::{Code, Status};

pub fn serialization(detail: &str) -> Status {
    status(
        Code::InvalidArgument,
        Exception::Serialization,
        format!("the request body does not match the operation's input: {detail}"),
    )
}

pub fn unknown_operation(target: &str) -> Status {
    status(
        Code::InvalidArgument,
        Exception::UnknownOperation,
        format!("unknown operation {target:?}"),
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
        "__type": exception(status).as_str(),
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
