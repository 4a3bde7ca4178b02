//! Orders joined with their customer's latest value from a table topic:
//! each order once, with `"customer": null` when the customer is unknown,
//! keyed by the order's id.

use serde::{Deserialize, Serialize};
use weir::prelude::*;
use weir::sink::Sink;

/// An order, as the orders topic carries it (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// The order's id: the output record's key.
    pub order_id: String,
    /// Whom it is for: the key it is joined by.
    pub customer_id: String,
    /// How much.
    pub amount: f64,
    /// When, in ms since the Unix epoch: its event time.
    pub ts: i64,
}

/// A customer, as the customers topic carries it (JSON, keyed by the
/// customer's id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// The customer's name.
    pub name: String,
    /// Where they live.
    pub country: String,
}

/// An order with its customer, as the output carries it (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichedOrder {
    /// The order's id.
    pub order_id: String,
    /// Whom it is for.
    pub customer_id: String,
    /// How much.
    pub amount: f64,
    /// When, in ms since the Unix epoch.
    pub ts: i64,
    /// The customer's value as of the order's time; `None` (`null`) when
    /// the table had none.
    pub customer: Option<Customer>,
}

impl EnrichedOrder {
    /// `order` with `customer`.
    pub fn new(order: Order, customer: Option<&Customer>) -> Self {
        EnrichedOrder {
            order_id: order.order_id,
            customer_id: order.customer_id,
            amount: order.amount,
            ts: order.ts,
            customer: customer.cloned(),
        }
    }
}

/// How far out of order (ms) the orders of one partition, and the
/// customers of one, may come: the join waits this long for updates.
pub const MAX_DELAY_MS: i64 = 5_000;

/// The event time of a record of either topic: an order's `ts`; a
/// customer update's Kafka timestamp (when it took effect).
pub fn event_time(r: &Either<KafkaRecord<(), Order>, KafkaRecord<String, Customer>>) -> i64 {
    match r {
        Either::Left(o) => o
            .value
            .as_ref()
            .map_or(o.timestamp.unwrap_or(0), |order| order.ts),
        Either::Right(c) => c.timestamp.unwrap_or(0),
    }
}

/// Orders (left) and customer updates (right) as one stream: each order
/// keyed by its customer, on the join's stream side; each update keyed by
/// its record's key, on its table side (a null value deletes the
/// customer). A null order, and an update without a key, are skipped.
pub fn to_join_input(
    r: Either<KafkaRecord<(), Order>, KafkaRecord<String, Customer>>,
) -> Option<(String, JoinInput<Order, Customer>)> {
    match r {
        Either::Left(o) => {
            let order = o.value?;
            Some((order.customer_id.clone(), JoinInput::Stream(order)))
        }
        Either::Right(c) => Some((c.key?, JoinInput::Table(c.value))),
    }
}

/// The pipeline: `source` (orders `and` customers) through the join by
/// customer, re-keyed by order id, into `sink`.
pub fn pipeline<S>(
    p: &mut Pipeline,
    source: KafkaSource<Either<KafkaRecord<(), Order>, KafkaRecord<String, Customer>>>,
    sink: S,
) where
    S: Sink<Record<String, EnrichedOrder>>,
{
    p.source(source)
        .event_time(event_time, MAX_DELAY_MS)
        .flat_map(to_join_input)
        .key_with(|(customer, input)| (customer, input))
        // Customers are input 1 of the source: an order whose time the
        // customers' watermark passed is joined at once.
        .join_table_from(
            1,
            JoinKind::Left,
            |_customer: &String, order: Order, customer: Option<&Customer>| {
                EnrichedOrder::new(order, customer)
            },
        )
        .select_key(|_customer, order| order.order_id.clone())
        .sink(sink);
}
