/**
 * Looks for each secret in each log text. Besides the secret itself, checks the forms a
 * logger could turn it into: JSON-escaped and base64.
 */
export function findLeakedSecrets(
  logs: readonly { name: string; text: string }[],
  secrets: readonly string[],
): { file: string; kind: string }[] {
  const out: { file: string; kind: string }[] = [];
  const unique = [...new Set(secrets.map((s) => s.trim()).filter((s) => s.length >= 16))];
  for (const s of unique) {
    const forms = [s, JSON.stringify(s).slice(1, -1), Buffer.from(s).toString('base64')];
    // A JWT leaks just as badly through its signature part alone.
    if (s.startsWith('eyJ')) forms.push(s.split('.').pop()!);
    for (const log of logs) {
      if (forms.some((f) => f.length >= 16 && log.text.includes(f))) {
        out.push({ file: log.name, kind: s.startsWith('tg_') ? 'api key' : s.startsWith('eyJ') ? 'token' : 'other' });
      }
    }
  }
  return out;
}
