//! The live event streams, as Server-Sent Events: `GET /runs/{id}/events` (one run,
//! replayed from its start or from `Last-Event-ID`, then live until it ends) and
//! `GET /events` (every run the token may see, from now on).
//!
//! Each event is `id:` (the run's sequence number; `RUN:SEQ` on the all-runs stream),
//! `event:` (its kind, `suite-finished`) and `data:` (its JSON line, as `--events`
//! writes it). A comment every 15 s keeps proxies from cutting an idle stream. A client
//! that falls more than the scan service's buffer behind gets `event: lagged` and the
//! stream ends: it reconnects with `Last-Event-ID` and is replayed what it missed. No run
//! ever waits for a client.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, BoxStream, Stream, StreamExt};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::api::locate;
use super::auth::Caller;
use super::problem::Problem;
use crate::access::{Action, Scope};
use crate::scans::ScanEvent;
use crate::store::live::StoredEvent;

/// How often an idle stream sends a comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What a stream sends next.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// One event: its `id:`, `event:` and `data:`.
    Line {
        id: String,
        kind: String,
        data: String,
    },
    /// The client fell `missed` events behind; the stream ends after saying so.
    Lagged { missed: u64 },
}

impl Item {
    fn of_run(line: &StoredEvent) -> Item {
        Item::Line {
            id: line.seq.to_string(),
            kind: line.kind.clone(),
            data: line.body.clone(),
        }
    }

    fn of_scan(event: &ScanEvent) -> Item {
        Item::Line {
            id: format!("{}:{}", event.run_id, event.line.seq),
            kind: event.line.kind.clone(),
            data: event.line.body.clone(),
        }
    }

    fn event(self) -> Event {
        match self {
            Item::Line { id, kind, data } => Event::default().id(id).event(kind).data(data),
            Item::Lagged { missed } => Event::default().event("lagged").data(
                serde_json::json!({
                    "missed": missed,
                    "detail": "this client fell behind the run's events; reconnect with Last-Event-ID to be replayed what it missed",
                })
                .to_string(),
            ),
        }
    }
}

/// Items from a broadcast receiver, those `keep` lets through, until the channel closes
/// or the receiver lags (then one `Lagged`, and the end).
pub fn follow<T: Clone + Send + 'static>(
    receiver: broadcast::Receiver<T>,
    keep: impl Fn(&T) -> Option<Item> + Send + Sync + 'static,
) -> BoxStream<'static, Item> {
    let keep = Arc::new(keep);
    stream::unfold(Some(receiver), move |receiver| {
        let keep = Arc::clone(&keep);
        async move {
            let mut receiver = receiver?;
            loop {
                match receiver.recv().await {
                    Ok(value) => {
                        if let Some(item) = keep(&value) {
                            return Some((item, Some(receiver)));
                        }
                    }
                    Err(RecvError::Lagged(missed)) => return Some((Item::Lagged { missed }, None)),
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    })
    .boxed()
}

/// The SSE response of `items`, ending when the server closes.
fn respond(
    items: impl Stream<Item = Item> + Send + 'static,
    closing: CancellationToken,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = items
        .take_until(async move { closing.cancelled_owned().await })
        .map(|item| Ok(item.event()));
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// `Last-Event-ID`: the sequence number of the last event the client has.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        Problem::bad_request(
            "bad-last-event-id",
            format!(
                "Last-Event-ID must be the id of an event of this stream (a number), not {:?}",
                text.chars().take(32).collect::<String>()
            ),
        )
    })
}

/// One run's events: what happened so far (after `Last-Event-ID`), then live until the
/// run ends.
#[utoipa::path(
    get,
    path = "/runs/{run_id}/events",
    tag = "events",
    security(("bearer" = [])),
    params(
        ("run_id" = String, Path, description = "The run's id"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events: id = sequence number, event = kind, data = the event's JSON line; `event: lagged` then the end for a client that fell behind", content_type = "text/event-stream", body = String),
        (status = 400, description = "A Last-Event-ID that is not a number", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token, or an unknown one", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run (or one the token may not see), or a run recorded without its events", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn run_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    caller.require_role(Action::Read)?;
    let after = last_event_id(&headers)?;
    let located = locate(&state, &caller, &run_id).await?;
    let Some(events) = state.scans().events(located.run_id(), after) else {
        return Err(Problem::not_found(
            "no-events",
            format!(
                "run `{}` was recorded without its events (only the server's runs keep them)",
                located.run_id()
            ),
        ));
    };
    let replay = stream::iter(events.replay.into_iter().map(|line| Item::of_run(&line)));
    let live = match events.live {
        Some(receiver) => follow(receiver, |line: &Arc<StoredEvent>| Some(Item::of_run(line))),
        None => stream::empty().boxed(),
    };
    Ok(respond(replay.chain(live), state.closing().clone()))
}

/// Every event of every run the token may see, from now on (no replay: follow a run's
/// own stream to have all of it).
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Server-Sent Events: id = RUN:SEQ, event = kind, data = the event's JSON line (with run_id and project); `event: lagged` then the end for a client that fell behind", content_type = "text/event-stream", body = String),
        (status = 401, description = "No token, or an unknown one", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn all_events(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    caller.require_role(Action::Read)?;
    let scope: Scope = caller.scope().clone();
    let items = follow(state.scans().all_events(), move |event: &Arc<ScanEvent>| {
        scope.sees(&event.project).then(|| Item::of_scan(event))
    });
    Ok(respond(items, state.closing().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64) -> Arc<StoredEvent> {
        Arc::new(StoredEvent {
            seq,
            kind: "suite-started".into(),
            body: format!("{{\"seq\":{seq}}}"),
        })
    }

    #[tokio::test]
    async fn a_receiver_that_falls_behind_is_told_once_and_its_stream_ends() {
        let (sender, receiver) = broadcast::channel(2);
        for seq in 1..=5 {
            sender.send(line(seq)).unwrap();
        }
        let items: Vec<Item> = follow(receiver, |l: &Arc<StoredEvent>| Some(Item::of_run(l)))
            .collect()
            .await;
        // The sender is still open: only the lag ended the stream.
        assert_eq!(items, vec![Item::Lagged { missed: 3 }]);
        drop(sender);
    }

    #[tokio::test]
    async fn a_stream_follows_until_the_channel_closes_and_filters() {
        let (sender, receiver) = broadcast::channel(8);
        let stream = follow(receiver, |l: &Arc<StoredEvent>| {
            l.seq.is_multiple_of(2).then(|| Item::of_run(l))
        });
        for seq in 1..=4 {
            sender.send(line(seq)).unwrap();
        }
        drop(sender);
        let ids: Vec<String> = stream
            .map(|item| match item {
                Item::Line { id, .. } => id,
                other => panic!("{other:?}"),
            })
            .collect()
            .await;
        assert_eq!(ids, ["2", "4"]);
    }

    #[test]
    fn last_event_id_is_a_number_or_nothing() {
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers).unwrap(), None);
        headers.insert("last-event-id", "17".parse().unwrap());
        assert_eq!(last_event_id(&headers).unwrap(), Some(17));
        headers.insert("last-event-id", "../etc".parse().unwrap());
        assert_eq!(last_event_id(&headers).unwrap_err().status, 400);
    }
}
