// Lint: typescript-eslint's recommended type-aware rules, plus a few that catch real bugs
// in a server (floating promises, misused promises in callbacks).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js', 'scripts/*.mjs', 'examples/*.mjs'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // node:test's describe/test return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] }] },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      eqeqeq: ['error', 'smart'],
    },
  },
  {
    files: ['eslint.config.js', 'scripts/*.mjs', 'examples/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  // The examples are programs users copy: Node's globals are theirs to use.
  { files: ['examples/*.mjs'], languageOptions: { globals: { console: 'readonly', process: 'readonly' } } },
);
