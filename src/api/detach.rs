//! Requests run to completion whatever happens to their caller.
//!
//! A request's work and its audit record belong together: the record is written after the
//! work, and a state change must never exist without one. When a client's deadline expires
//! or its connection closes, tonic and hyper drop the request's future — possibly after the
//! store commit and before the audit record. So every request's future is handed to a task of
//! its own ([`DetachLayer`] for gRPC, [`InFlight::detach`] for the AWS endpoint): the caller
//! may go, the task finishes the work and writes the record. The caller's side only waits for
//! the answer.
//!
//! [`InFlight`] counts those tasks, so shutdown can wait for them before the audit log
//! closes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll};
use std::time::Duration;

/// Requests being answered, and a wake-up when the count reaches zero.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: tokio::sync::Notify,
}

impl InFlight {
    /// True once nothing is in flight, false if that takes longer than `within`.
    pub async fn idle_within(&self, within: Duration) -> bool {
        let idle = async {
            loop {
                // Registered before the check, so a drop in between is not missed.
                let notified = self.idle.notified();
                if self.count.load(SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(within, idle).await.is_ok()
    }

    /// Runs `work` in its own task, counted while it runs; the returned future only waits for
    /// its answer, so dropping it does not stop the work. A task that panicked answers None.
    pub fn detach<T, F>(
        self: &Arc<Self>,
        work: F,
    ) -> impl Future<Output = Option<T>> + Send + 'static + use<T, F>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let counted = Counted::new(Arc::clone(self));
        let task = tokio::spawn(async move {
            let _counted = counted;
            work.await
        });
        async move { task.await.ok() }
    }
}

/// Counts one request for as long as it lives, however its future ends.
pub struct Counted(Arc<InFlight>);

impl Counted {
    pub fn new(in_flight: Arc<InFlight>) -> Self {
        in_flight.count.fetch_add(1, SeqCst);
        Self(in_flight)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The tower layer that detaches every gRPC request (see the module docs).
#[derive(Clone)]
pub struct DetachLayer(pub Arc<InFlight>);

impl<S> tower::Layer<S> for DetachLayer {
    type Service = Detach<S>;

    fn layer(&self, inner: S) -> Detach<S> {
        Detach {
            inner,
            in_flight: Arc::clone(&self.0),
        }
    }
}

#[derive(Clone)]
pub struct Detach<S> {
    inner: S,
    in_flight: Arc<InFlight>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, Req> tower::Service<http::Request<Req>> for Detach<S>
where
    S: tower::Service<http::Request<Req>>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Req>) -> Self::Future {
        let answer = self.in_flight.detach(self.inner.call(request));
        Box::pin(async move {
            match answer.await {
                Some(response) => response.map_err(Into::into),
                None => Err("the request's task panicked".into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::InFlight;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn drain_waits_for_requests_in_flight_and_gives_up_at_the_limit() {
        let in_flight = Arc::new(InFlight::default());
        assert!(in_flight.idle_within(Duration::ZERO).await, "idle at once");
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let answer = in_flight.detach(async move {
            let _ = released.await;
        });
        assert!(!in_flight.idle_within(Duration::from_millis(20)).await);
        let _ = release.send(());
        assert!(in_flight.idle_within(Duration::from_secs(5)).await);
        assert_eq!(answer.await, Some(()));
    }

    #[tokio::test]
    async fn detached_work_finishes_when_its_caller_goes_away() {
        let in_flight = Arc::new(InFlight::default());
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let answer = in_flight.detach(async move {
            let _ = released.await;
            let _ = done.send(());
        });
        // The caller gives up before the work is done.
        drop(answer);
        let _ = release.send(());
        assert!(finished.await.is_ok(), "the work ran to its end");
        assert!(in_flight.idle_within(Duration::from_secs(5)).await);
    }
}
