import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema } from "./gen/google/rpc/error_details_pb.js";

/** One invalid field of a request, as the server names it. */
export interface FieldViolation {
  /** Path of the field in the request, e.g. `connector.perform.url`. */
  field: string;
  /** What is wrong with it, e.g. `is required` or an expression's error with its position. */
  description: string;
}

/** A failed call, flattened for callers that branch on it or show it. */
export interface HookplaneError {
  /** The gRPC status code, e.g. `Code.InvalidArgument`. */
  code: Code;
  /** The server's message, without Connect's `[code]` prefix. */
  message: string;
  /**
   * The field violations of an INVALID_ARGUMENT (its `google.rpc.BadRequest`
   * detail); empty for every other error.
   */
  violations: FieldViolation[];
}

/**
 * Turns whatever a call threw into a HookplaneError. Errors that are not a
 * ConnectError (a bug in a caller's interceptor, say) become `Code.Unknown`
 * with their message, so callers handle one shape.
 */
export function parseError(err: unknown): HookplaneError {
  const error = ConnectError.from(err);
  const violations = error
    .findDetails(BadRequestSchema)
    .flatMap((badRequest) =>
      badRequest.fieldViolations.map(({ field, description }) => ({ field, description })),
    );
  return { code: error.code, message: error.rawMessage, violations };
}
