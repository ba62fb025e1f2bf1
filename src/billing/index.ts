export { SettlementLedger } from './settlement-ledger.js';
export type { SettlementLedgerOptions, SettlementLedgerDeps, SettlementStage, SettleStatus, LedgerStore, LedgerCounters, LedgerTimers } from './settlement-ledger.js';
export { SettlementJournal } from './settlement-journal.js';
export type { JournalEntry } from './settlement-journal.js';
export { usageIdOf, usageOf, settlementSchema } from './settlement.js';
export type { Settlement, RecordCompletion } from './settlement.js';
