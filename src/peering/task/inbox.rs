//! What the generated channel machine hands to the owner, collected as [`Handed`]
//! values for the session to act on.

use bytes::Bytes;

use crate::protocol::generated::methods::*;
use crate::protocol::generated::peer_agent::PeerOwner;
use crate::protocol::generated::properties::EncodedBasicProperties;
use crate::protocol::{ReplyCode, ShortString};

/// What the generated channel machine hands to the owner.
#[derive(Debug)]
pub(super) enum Handed {
    Response(Method),
    Deliver(BasicDeliver, EncodedBasicProperties, Bytes),
    Return(BasicReturn, EncodedBasicProperties, Bytes),
    Confirm { tag: u64, multiple: bool, ok: bool },
    Cancelled(ShortString),
    ChannelClose(ChannelClose),
    Flow(bool),
    ConnectionClose(ConnectionClose),
    Blocked(ShortString),
    Unblocked,
}

/// The generated [`PeerOwner`] trait, collecting what it is handed.
#[derive(Default)]
pub(super) struct Inbox(pub(super) Vec<Handed>);

/// A content as the peering keeps it.
pub(super) struct Content {
    pub(super) properties: EncodedBasicProperties,
    pub(super) body: Bytes,
}

macro_rules! responses {
    ($($name:ident: $ty:ident),* $(,)?) => {
        $(fn $name(&mut self, _channel: u16, m: $ty) {
            self.0.push(Handed::Response(Method::$ty(m)));
        })*
    };
}

impl PeerOwner for Inbox {
    type Content = Content;
    responses! {
        connection_start: ConnectionStart,
        connection_open_ok: ConnectionOpenOk,
        connection_close_ok: ConnectionCloseOk,
        connection_update_secret_ok: ConnectionUpdateSecretOk,
        channel_open_ok: ChannelOpenOk,
        channel_flow_ok: ChannelFlowOk,
        channel_close_ok: ChannelCloseOk,
        exchange_declare_ok: ExchangeDeclareOk,
        exchange_delete_ok: ExchangeDeleteOk,
        exchange_bind_ok: ExchangeBindOk,
        exchange_unbind_ok: ExchangeUnbindOk,
        queue_declare_ok: QueueDeclareOk,
        queue_bind_ok: QueueBindOk,
        queue_purge_ok: QueuePurgeOk,
        queue_delete_ok: QueueDeleteOk,
        queue_unbind_ok: QueueUnbindOk,
        basic_qos_ok: BasicQosOk,
        basic_consume_ok: BasicConsumeOk,
        basic_cancel_ok: BasicCancelOk,
        basic_get_empty: BasicGetEmpty,
        basic_recover_ok: BasicRecoverOk,
        confirm_select_ok: ConfirmSelectOk,
        tx_select_ok: TxSelectOk,
        tx_commit_ok: TxCommitOk,
        tx_rollback_ok: TxRollbackOk,
    }
    fn connection_close(&mut self, _channel: u16, m: ConnectionClose) {
        self.0.push(Handed::ConnectionClose(m));
    }
    fn connection_blocked(&mut self, _channel: u16, m: ConnectionBlocked) {
        self.0.push(Handed::Blocked(m.reason));
    }
    fn connection_unblocked(&mut self, _channel: u16, _m: ConnectionUnblocked) {
        self.0.push(Handed::Unblocked);
    }
    fn channel_flow(&mut self, _channel: u16, m: ChannelFlow) {
        self.0.push(Handed::Flow(m.active));
    }
    fn channel_close(&mut self, _channel: u16, m: ChannelClose) {
        self.0.push(Handed::ChannelClose(m));
    }
    fn basic_cancel(&mut self, _channel: u16, m: BasicCancel) {
        self.0.push(Handed::Cancelled(m.consumer_tag));
    }
    fn basic_return(&mut self, _channel: u16, m: BasicReturn, c: Content) {
        self.0.push(Handed::Return(m, c.properties, c.body));
    }
    fn basic_deliver(&mut self, _channel: u16, m: BasicDeliver, c: Content) {
        self.0.push(Handed::Deliver(m, c.properties, c.body));
    }
    fn basic_get_ok(&mut self, _channel: u16, m: BasicGetOk, _c: Content) {
        // basic.get is not offered as a request, so this answers nothing we asked.
        self.0.push(Handed::Response(Method::BasicGetOk(m)));
    }
    fn basic_ack(&mut self, _channel: u16, m: BasicAck) {
        self.0.push(Handed::Confirm {
            tag: m.delivery_tag,
            multiple: m.multiple,
            ok: true,
        });
    }
    fn basic_nack(&mut self, _channel: u16, m: BasicNack) {
        self.0.push(Handed::Confirm {
            tag: m.delivery_tag,
            multiple: m.multiple,
            ok: false,
        });
    }
}

/// A protocol violation by the remote: we close the connection with this code.
pub(super) struct Violation {
    pub(super) code: ReplyCode,
    pub(super) text: String,
}
