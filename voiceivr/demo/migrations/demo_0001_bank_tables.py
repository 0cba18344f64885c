"""the demo bank's tables (customers, accounts, payees, cards, addresses, transfers), as core revision 0003 made them

Revision ID: demo_0001
Revises: (the demo branch starts here)
Create Date: 2026-12-05

The first revision of the demo plugin's own branch. A database made before the demo became a plugin already has
these tables, made by the core's 0003 (now empty): they are adopted as they are, data and all, and only a database
without them gets them created. PINs are stored only as salted PBKDF2 hashes; a transfer's idempotency key is
unique so that a retried action never moves money twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "demo_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("demo",)
depends_on: str | Sequence[str] | None = None

TABLES = ("bank_customers", "bank_accounts", "bank_addresses", "bank_cards", "bank_payees", "bank_transfers")


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names()) & set(TABLES)
    if present == set(TABLES):
        return  # made by core revision 0003 before the demo had a branch of its own: adopted as they are
    if present:
        raise RuntimeError(f"the demo's tables are half there ({', '.join(sorted(present))}); "
                           "restore them from a backup or drop them before upgrading")
    _create()


def downgrade() -> None:
    _drop()


def _create() -> None:
    op.create_table('bank_customers',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('phone_on_file', sa.String(length=32), nullable=False),
    sa.Column('totp_secret', sa.String(length=64), nullable=True),
    sa.Column('pin_salt', sa.String(length=32), nullable=False),
    sa.Column('pin_hash', sa.String(length=64), nullable=False),
    sa.Column('failed_logins', sa.Integer(), nullable=False),
    sa.Column('locked', sa.Boolean(), nullable=False),
    sa.Column('flagged', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bank_customers'))
    )
    op.create_table('bank_accounts',
    sa.Column('number', sa.String(length=16), nullable=False),
    sa.Column('customer_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('balance_cents', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['bank_customers.id'], name=op.f('fk_bank_accounts_customer_id_bank_customers')),
    sa.PrimaryKeyConstraint('number', name=op.f('pk_bank_accounts')),
    sa.UniqueConstraint('customer_id', 'kind', name='uq_bank_accounts_customer_id_kind')
    )
    with op.batch_alter_table('bank_accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bank_accounts_customer_id'), ['customer_id'], unique=False)

    op.create_table('bank_addresses',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.String(length=32), nullable=False),
    sa.Column('address', sa.Text(), nullable=False),
    sa.Column('current', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('idempotency_key', sa.String(length=128), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['bank_customers.id'], name=op.f('fk_bank_addresses_customer_id_bank_customers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bank_addresses')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_bank_addresses_idempotency_key'))
    )
    with op.batch_alter_table('bank_addresses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bank_addresses_customer_id'), ['customer_id'], unique=False)

    op.create_table('bank_cards',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.String(length=32), nullable=False),
    sa.Column('last4', sa.String(length=4), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('blocked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('blocked_reason', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['bank_customers.id'], name=op.f('fk_bank_cards_customer_id_bank_customers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bank_cards'))
    )
    with op.batch_alter_table('bank_cards', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bank_cards_customer_id'), ['customer_id'], unique=False)

    op.create_table('bank_payees',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.String(length=32), nullable=False),
    sa.Column('nickname', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('account_number', sa.String(length=34), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['bank_customers.id'], name=op.f('fk_bank_payees_customer_id_bank_customers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bank_payees')),
    sa.UniqueConstraint('customer_id', 'nickname', name='uq_bank_payees_customer_id_nickname')
    )
    with op.batch_alter_table('bank_payees', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bank_payees_customer_id'), ['customer_id'], unique=False)

    op.create_table('bank_transfers',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('reference', sa.String(length=16), nullable=False),
    sa.Column('idempotency_key', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.String(length=32), nullable=False),
    sa.Column('from_account', sa.String(length=16), nullable=False),
    sa.Column('to_account', sa.String(length=16), nullable=True),
    sa.Column('payee_id', sa.Integer(), nullable=True),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['bank_customers.id'], name=op.f('fk_bank_transfers_customer_id_bank_customers')),
    sa.ForeignKeyConstraint(['from_account'], ['bank_accounts.number'], name=op.f('fk_bank_transfers_from_account_bank_accounts')),
    sa.ForeignKeyConstraint(['payee_id'], ['bank_payees.id'], name=op.f('fk_bank_transfers_payee_id_bank_payees')),
    sa.ForeignKeyConstraint(['to_account'], ['bank_accounts.number'], name=op.f('fk_bank_transfers_to_account_bank_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bank_transfers')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_bank_transfers_idempotency_key')),
    sa.UniqueConstraint('reference', name=op.f('uq_bank_transfers_reference'))
    )
    with op.batch_alter_table('bank_transfers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bank_transfers_customer_id'), ['customer_id'], unique=False)


def _drop() -> None:
    with op.batch_alter_table('bank_transfers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bank_transfers_customer_id'))

    op.drop_table('bank_transfers')
    with op.batch_alter_table('bank_payees', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bank_payees_customer_id'))

    op.drop_table('bank_payees')
    with op.batch_alter_table('bank_cards', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bank_cards_customer_id'))

    op.drop_table('bank_cards')
    with op.batch_alter_table('bank_addresses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bank_addresses_customer_id'))

    op.drop_table('bank_addresses')
    with op.batch_alter_table('bank_accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bank_accounts_customer_id'))

    op.drop_table('bank_accounts')
    op.drop_table('bank_customers')
