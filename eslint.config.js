// Lint rules: typescript-eslint's recommended type-aware set, plus the project's own habits
// (no floating promises on the hot path, no console outside the CLI), and the layers of
// ARCHITECTURE.md: imports point down only.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * What each folder of src/ may import besides itself (its own files). Everything not listed is
 * a higher layer or a sibling it must not reach: the protocol stack (transport, media, sdp, sip)
 * never imports keys, policy or store (sip/ gets policy through an injected interface), and
 * nothing imports the composition root (src/main.ts, src/core.ts, src/voice.ts,
 * src/sip-service.ts) but the entry point (src/tollgate.ts).
 */
/** net/ is the egress guard: every server-side request (webhooks, agent dial-out, x5u) goes through it. */
const BASE = ['errors', 'util', 'observability', 'net'];
const MAY_IMPORT = {
  errors: [],
  util: ['errors'],
  observability: ['errors', 'util'],
  net: ['errors', 'util', 'observability'],
  store: [...BASE],
  config: [...BASE, 'store'],
  audit: [...BASE, 'config', 'store'],
  keys: [...BASE, 'config', 'store', 'audit'],
  billing: [...BASE, 'config', 'store'],
  policy: [...BASE, 'config', 'store', 'audit', 'keys', 'billing'],
  webhooks: [...BASE, 'config', 'store', 'audit', 'keys'],
  transport: [...BASE, 'config'],
  media: [...BASE, 'config'],
  sdp: [...BASE, 'config', 'media'],
  sip: [...BASE, 'config', 'transport', 'sdp'],
  stir: [...BASE, 'config'],
  agents: [...BASE, 'config', 'store', 'audit', 'keys', 'billing', 'policy', 'webhooks', 'media'],
  calls: [...BASE, 'config', 'store', 'audit', 'keys', 'billing', 'policy', 'webhooks', 'transport', 'media', 'sdp', 'sip', 'stir', 'agents'],
  api: [...BASE, 'config', 'store', 'audit', 'keys', 'billing', 'policy', 'webhooks', 'transport', 'media', 'sdp', 'sip', 'stir', 'agents', 'calls'],
  cli: [...BASE, 'config', 'store', 'audit', 'keys', 'billing', 'policy', 'webhooks', 'transport', 'media', 'sdp', 'sip', 'stir', 'agents', 'calls', 'api'],
};
const FOLDERS = Object.keys(MAY_IMPORT);
const ROOT_FILES = ['main', 'core', 'voice', 'sip-service', 'tollgate'];
const layerRules = Object.entries(MAY_IMPORT).map(([folder, allowed]) => ({
  files: [`src/${folder}/**/*.ts`],
  ignores: ['**/*.test.ts', '**/*-contract.ts'],
  rules: {
    'no-restricted-imports': ['error', {
      patterns: [
        ...(FOLDERS.some((f) => f !== folder && !allowed.includes(f))
          ? [{
            group: FOLDERS.filter((f) => f !== folder && !allowed.includes(f)).flatMap((f) => [`../${f}/*`, `../../${f}/*`]),
            message: `${folder}/ may import only ${allowed.join(', ') || 'nothing of src/'} (ARCHITECTURE.md layers: imports point down); hand it an interface instead.`,
          }]
          : []),
        {
          group: ROOT_FILES.flatMap((f) => [`../${f}`, `../${f}.js`, `../../${f}`, `../../${f}.js`]),
          message: 'Only the entry point imports the composition root: take what you use as a constructor argument.',
        },
      ],
    }],
  },
}));

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'data/**', 'coverage/**', 'eslint.config.js', 'bench/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      'no-console': 'error',
    },
  },
  ...layerRules,
  {
    files: ['src/cli/**/*.ts', 'bench/**/*.ts', 'test/**/*.ts', '**/*.test.ts'],
    rules: { 'no-console': 'off' },
  },
  {
    files: ['test/**/*.ts', '**/*.test.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
);
