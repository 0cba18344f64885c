"""initial schema: calls, turns, audit trail, confirmations, actions, dialplans

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-25 16:51:20.047876
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('action_runs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('idempotency_key', sa.String(length=128), nullable=False),
    sa.Column('call_id', sa.String(length=36), nullable=True),
    sa.Column('action_type', sa.String(length=64), nullable=False),
    sa.Column('params_json', sa.Text(), nullable=False),
    sa.Column('risk', sa.String(length=8), nullable=False),
    sa.Column('intent_audit_seq', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('result_json', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_action_runs')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_action_runs_idempotency_key'))
    )
    with op.batch_alter_table('action_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_action_runs_call_id'), ['call_id'], unique=False)
        batch_op.create_index('ix_action_runs_status', ['status'], unique=False)

    op.create_table('audit_events',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('call_id', sa.String(length=36), nullable=True),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_events')),
    sa.UniqueConstraint('hash', name=op.f('uq_audit_events_hash'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_call_id'), ['call_id'], unique=False)

    op.create_table('dialplan_versions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_by', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dialplan_versions')),
    sa.UniqueConstraint('name', 'sha256', name='uq_dialplan_versions_name_sha256'),
    sa.UniqueConstraint('name', 'version', name='uq_dialplan_versions_name_version')
    )
    op.create_table('pending_confirmations',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('call_id', sa.String(length=36), nullable=False),
    sa.Column('session_id', sa.String(length=64), nullable=False),
    sa.Column('principal', sa.String(length=128), nullable=False),
    sa.Column('action_type', sa.String(length=64), nullable=False),
    sa.Column('action_digest', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('destination_masked', sa.String(length=32), nullable=False),
    sa.Column('code_mac', sa.String(length=64), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pending_confirmations'))
    )
    with op.batch_alter_table('pending_confirmations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pending_confirmations_call_id'), ['call_id'], unique=False)

    op.create_table('calls',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('node', sa.String(length=128), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('sip_call_id', sa.String(length=255), nullable=True),
    sa.Column('caller_uri', sa.String(length=255), nullable=True),
    sa.Column('dialplan_version_id', sa.Integer(), nullable=True),
    sa.Column('outcome', sa.String(length=32), nullable=True),
    sa.Column('resolved_tasks', sa.Integer(), nullable=False),
    sa.Column('engine_seconds', sa.Float(), nullable=False),
    sa.Column('stats_json', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['dialplan_version_id'], ['dialplan_versions.id'], name=op.f('fk_calls_dialplan_version_id_dialplan_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calls'))
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_calls_sip_call_id'), ['sip_call_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_started_at'), ['started_at'], unique=False)

    op.create_table('sms_outbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('confirmation_id', sa.String(length=36), nullable=False),
    sa.Column('to_number', sa.String(length=32), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('provider_sid', sa.String(length=64), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['confirmation_id'], ['pending_confirmations.id'], name=op.f('fk_sms_outbox_confirmation_id_pending_confirmations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_outbox')),
    sa.UniqueConstraint('confirmation_id', name=op.f('uq_sms_outbox_confirmation_id'))
    )
    op.create_table('turns',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('call_id', sa.String(length=36), nullable=False),
    sa.Column('idx', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('node', sa.String(length=128), nullable=False),
    sa.Column('input_kind', sa.String(length=16), nullable=False),
    sa.Column('transcript', sa.Text(), nullable=True),
    sa.Column('intent', sa.String(length=128), nullable=True),
    sa.Column('tier', sa.Integer(), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('prompt_played_ms', sa.Integer(), nullable=True),
    sa.Column('barged_in', sa.Boolean(), nullable=False),
    sa.Column('latencies_json', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_turns_call_id_calls'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_turns')),
    sa.UniqueConstraint('call_id', 'idx', name='uq_turns_call_id_idx')
    )


def downgrade() -> None:
    op.drop_table('turns')
    op.drop_table('sms_outbox')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calls_started_at'))
        batch_op.drop_index(batch_op.f('ix_calls_sip_call_id'))

    op.drop_table('calls')
    with op.batch_alter_table('pending_confirmations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pending_confirmations_call_id'))

    op.drop_table('pending_confirmations')
    op.drop_table('dialplan_versions')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_call_id'))

    op.drop_table('audit_events')
    with op.batch_alter_table('action_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_action_runs_status')
        batch_op.drop_index(batch_op.f('ix_action_runs_call_id'))

    op.drop_table('action_runs')
