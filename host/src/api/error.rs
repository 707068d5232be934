//! API errors: a status code and Nomad's plain-text message.

use warp::http::StatusCode;

use crate::plugins::PluginFailure;

/// An error answer: `Content-Type: text/plain; charset=utf-8`, the message as the body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// ls/stat mapping: "no such file or directory" is 404, a plugin fault 500 naming the
    /// plugin, anything else 500 with the plugin's text.
    pub fn from_fs_failure(failure: &PluginFailure) -> Self {
        if failure.is_plugin_fault() {
            Self::internal(failure.describe())
        } else if failure.message().contains("no such file or directory") {
            Self::not_found(failure.message())
        } else {
            Self::internal(failure.message())
        }
    }

    /// A failure before streaming starts (the pre-stream stat of cat/readat/stream): 400
    /// unless the plugin itself failed.
    pub fn from_prestream_failure(failure: &PluginFailure) -> Self {
        if failure.is_plugin_fault() {
            Self::internal(failure.describe())
        } else {
            Self::bad_request(failure.message())
        }
    }

    /// Any other failure: 500, naming the plugin when it is the plugin's fault.
    pub fn from_failure(failure: &PluginFailure) -> Self {
        if failure.is_plugin_fault() { Self::internal(failure.describe()) } else { Self::internal(failure.message()) }
    }
}
