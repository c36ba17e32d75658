//! A text part that ends while text of it is held: clients join it with the next text part
//! of the same message (Anthropic text blocks, Responses `output_text` parts), so a match may
//! still span the two. The event that ends it, and the events after it that carry no text,
//! wait unread in a queue until an event shows what comes: the next text part takes the held
//! text as the start of its own (the joined text a client shows is the same; only where one
//! part ends moves, by at most what was held), and anything else settles it (its held text
//! goes out as final). The queued events are then read in order, so what they repeat of the
//! part's text is what was finally sent for it.

use super::super::AnswerScan;
use super::families::{self, ChannelKey, Plan};
use super::{Stop, Stream, MAX_EVENT_BYTES};

#[derive(Debug)]
pub(super) struct Linger {
    /// The part that ended with text held.
    key: ChannelKey,
    /// The events since, unread, in order.
    queue: Vec<Vec<u8>>,
}

impl Linger {
    /// Bytes queued.
    pub(super) fn queued(&self) -> usize {
        self.queue
            .iter()
            .map(Vec::len)
            .fold(0, usize::saturating_add)
    }
}

impl Stream {
    /// Decides what becomes of an event (`raw`, planned as `plan`) while a part lingers, or
    /// whether it makes one linger: `true` when the event was queued, not to be read now.
    pub(super) fn linger_before(
        &mut self,
        raw: &[u8],
        plan: &Plan,
        scan: &dyn AnswerScan,
        out: &mut Vec<u8>,
    ) -> Result<bool, Stop> {
        while let Some(ended) = self.linger.as_ref().map(|linger| linger.key) {
            let own_text = plan.deltas.iter().any(|(_, key, _)| *key == ended);
            let next = plan.deltas.iter().find(|(_, key, _)| {
                families::continues(self.shape, ended, *key)
                    && !self.channels.iter().any(|(each, _)| each == key)
            });
            if let Some((_, key, kind)) = next.filter(|_| !own_text) {
                let (context, unsent) = self
                    .channels
                    .iter_mut()
                    .find(|(each, _)| *each == ended)
                    .map(|(_, channel)| channel.take_unsent())
                    .unwrap_or_default();
                // The queued events repeat the part's text as now final, and may announce
                // the next part: read before the next part holds the text.
                self.replay(scan, out)?;
                self.channel(*key, *kind)?.continue_from(context, unsent);
                continue;
            }
            let quiet =
                plan.deltas.is_empty() && !plan.end_all && !plan.end_groups.contains(&ended.0);
            let queued = self.linger.as_ref().map_or(0, Linger::queued);
            if quiet && queued.saturating_add(raw.len()) <= MAX_EVENT_BYTES {
                if let Some(linger) = &mut self.linger {
                    linger.queue.push(raw.to_vec());
                }
                return Ok(true);
            }
            // Anything else (the part's own text again included: it is read next, after
            // the part's end, and cuts the stream) settles the part.
            self.settle(scan, out)?;
        }
        // An event with no text that ends a part whose text is held: the part lingers.
        if !plan.deltas.is_empty() || plan.end_all {
            return Ok(false);
        }
        let lingering = self.channels.iter().find(|(key, channel)| {
            channel.open
                && channel.held() > 0
                && plan.ends(*key)
                && families::may_continue(self.shape, *key)
        });
        let Some((key, _)) = lingering else {
            return Ok(false);
        };
        self.linger = Some(Linger {
            key: *key,
            queue: vec![raw.to_vec()],
        });
        Ok(true)
    }

    /// The lingering part's held text goes out as final, then the events queued behind it.
    pub(super) fn settle(&mut self, scan: &dyn AnswerScan, out: &mut Vec<u8>) -> Result<(), Stop> {
        let Some(key) = self.linger.as_ref().map(|linger| linger.key) else {
            return Ok(());
        };
        let text = self.release(key, true, scan, out)?;
        if !text.is_empty() {
            self.write_copy(key, &text, out);
        }
        self.replay(scan, out)
    }

    /// Reads the queued events in order (the part no longer lingers).
    fn replay(&mut self, scan: &dyn AnswerScan, out: &mut Vec<u8>) -> Result<(), Stop> {
        let Some(linger) = self.linger.take() else {
            return Ok(());
        };
        let mut queue = linger.queue.into_iter();
        while let Some(raw) = queue.next() {
            if self.linger.is_some() {
                // A queued event made another part linger: the rest wait behind it.
                if let Some(again) = &mut self.linger {
                    again.queue.push(raw);
                    again.queue.extend(queue.by_ref());
                }
                break;
            }
            self.event(&raw, scan, out)?;
        }
        Ok(())
    }
}
