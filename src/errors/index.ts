export * from './tollgate-error.js';
