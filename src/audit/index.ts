export * from './audit-log.js';
export * from './audit-checkpoints.js';
