//! Lingering close for upload bodies. When the server answers before it has
//! read an upload (a refused size, a wrong offset, a missing permission) and
//! the connection then closes with the client's bytes still unread, the
//! kernel resets it, and the client loses the answer it was about to read: it
//! sees "connection reset" instead of "413 too large". Like nginx's
//! `lingering_close`, an [`UploadBody`] dropped before its end keeps reading
//! (and discarding) for at most [`LINGER`], so the answer reaches the client.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{BodyDataStream, Bytes};
use axum::extract::{FromRequest, Request};
use futures::{Stream, StreamExt};

/// How long an unfinished upload is drained after its answer.
pub const LINGER: Duration = Duration::from_secs(10);

/// A request body for the upload routes: a stream of its bytes that lingers
/// when dropped unfinished.
pub struct UploadBody(Option<BodyDataStream>);

impl<S: Send + Sync> FromRequest<S> for UploadBody {
    type Rejection = Infallible;

    async fn from_request(request: Request, _: &S) -> Result<Self, Infallible> {
        Ok(UploadBody(Some(request.into_body().into_data_stream())))
    }
}

impl Stream for UploadBody {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(body) = self.0.as_mut() else {
            return Poll::Ready(None);
        };
        let next = body.poll_next_unpin(cx);
        if let Poll::Ready(None | Some(Err(_))) = next {
            // Finished, or broken: nothing left to linger on.
            self.0 = None;
        }
        next
    }
}

impl Drop for UploadBody {
    fn drop(&mut self) {
        let Some(mut rest) = self.0.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let drain = async { while let Some(Ok(_)) = rest.next().await {} };
                let _ = tokio::time::timeout(LINGER, drain).await;
            });
        }
    }
}
