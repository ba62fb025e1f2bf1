import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ApiContext, AuthContext } from '../context.js';
import type { CallRegistry } from '../../calls/call-registry.js';
import { accountSidFor } from '../../keys/key-identity.js';
import type { Principal } from '../../policy/principal.js';

/** Twilio's error body: { code, message, more_info, status }. */
function twilioError(reply: FastifyReply, status: number, code: number, message: string): FastifyReply {
  if (status === 401) reply.header('www-authenticate', 'Basic realm="tollgate"');
  return reply.code(status).send({ code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status });
}

/**
 * The slice of Twilio's REST API that agent frameworks call on a live call: ending it.
 * `POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json` with `Status=completed` (or
 * `canceled`), HTTP Basic auth with the account SID as user and the API key (or a token) as
 * password, exactly as Pipecat's Twilio serializer sends it. Idempotent: a call that has
 * already ended answers 404 with Twilio's code 20404.
 */
export function registerTwilioRoutes(app: FastifyInstance, ctx: AuthContext & Pick<ApiContext, 'credentials' | 'policy'>, calls: CallRegistry | null): void {
  app.register((scope, _opts, done) => {
    scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, parsed) => {
      parsed(null, Object.fromEntries(new URLSearchParams(body as string)));
    });
    scope.post<{ Params: { accountSid: string; callSid: string } }>('/2010-04-01/Accounts/:accountSid/Calls/:callSid', async (req, reply) => {
      const callSid = req.params.callSid.replace(/\.json$/, '');
      const principal = await basicAuth(ctx, req.headers.authorization, req.params.accountSid, req.ip);
      if (!principal) return twilioError(reply, 401, 20003, 'Authenticate');
      const body = (typeof req.body === 'object' && req.body !== null ? req.body : {}) as Record<string, unknown>;
      const status = body.Status;
      if (status !== 'completed' && status !== 'canceled') return twilioError(reply, 400, 21218, 'Status must be completed or canceled: tollgate can only end a call');
      const call = calls?.getOwned(callSid, principal.key.id);
      if (!call) return twilioError(reply, 404, 20404, `The requested resource /2010-04-01/Accounts/${req.params.accountSid}/Calls/${callSid}.json was not found`);
      const verdict = await ctx.policy.authorize({ principal, action: 'api', scope: call.direction === 'inbound' ? 'calls:inbound' : 'calls:outbound', sourceIp: req.ip, transport: req.protocol === 'https' ? 'https' : 'http' });
      if (!verdict.ok) return twilioError(reply, 403, 20403, verdict.message);
      req.principal = principal;
      call.details.agentHangup = 'rest';
      call.end('agent-hangup', 'agent');
      return reply.code(200).send({
        sid: callSid,
        account_sid: req.params.accountSid,
        from: call.from,
        to: call.to,
        direction: call.direction,
        status: 'completed',
        date_updated: new Date().toUTCString(),
        api_version: '2010-04-01',
        uri: `/2010-04-01/Accounts/${req.params.accountSid}/Calls/${callSid}.json`,
      });
    });
    done();
  });
}

/** Basic auth: user = the key's account SID (matching the URL), password = the key or a token. */
async function basicAuth(ctx: AuthContext & Pick<ApiContext, 'credentials' | 'policy'>, header: string | undefined, accountSid: string, ip: string): Promise<Principal | null> {
  const m = typeof header === 'string' ? /^Basic[ ]+([A-Za-z0-9+/=]+)\s*$/i.exec(header) : null;
  if (!m) return null;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i < 0) return null;
  const user = decoded.slice(0, i);
  const secret = decoded.slice(i + 1);
  const v = await ctx.credentials.verify(secret, ip);
  if (!v.ok) return null;
  const principal = v.principal;
  const expected = accountSidFor(principal.key.id);
  return user === expected && accountSid === expected ? principal : null;
}
