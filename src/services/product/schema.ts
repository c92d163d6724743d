import { Type, type Static } from 'typebox'
import { Amount } from '../../contracts/money.ts'
import { ProductId } from '../../contracts/product.ts'

// Text is refused at the edge when it holds control characters (a NUL, which PostgreSQL cannot
// store in text, and the rest of C0 and DEL) or lone UTF-16 surrogates (not text: they would be
// stored as U+FFFD). A name is one line, and not blank: at least one character that is not a
// space (the lookahead keeps the check linear in the length); a description may hold tabs and
// line breaks. (TypeBox and Ajv both compile patterns with the `u` flag: a class matches code
// points, so \uD800-\uDFFF matches only unpaired surrogates, and \s every Unicode space.)
const NAME_PATTERN = '^(?=[\\s\\S]*\\S)[^\\x00-\\x1F\\x7F\\uD800-\\uDFFF]*$'
const DESCRIPTION_PATTERN = '^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F\\uD800-\\uDFFF]*$'

export const CreateProductBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200, pattern: NAME_PATTERN, description: 'One line of text, not only spaces, with no control characters' }),
    price: Amount,
    description: Type.Optional(Type.String({ maxLength: 2000, pattern: DESCRIPTION_PATTERN, description: 'Text; tabs and line breaks allowed, no other control characters' })),
  },
  { additionalProperties: false },
)

export const ProductParams = Type.Object({ id: ProductId })

export type CreateProductBody = Static<typeof CreateProductBody>
