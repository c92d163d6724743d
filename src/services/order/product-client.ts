import { Compile } from 'typebox/compile'
import { type ServiceClient, UpstreamError, type UpstreamResponse } from '../../discovery/service-client.ts'
import { upstreamError, upstreamFailure } from '../../runtime/upstream.ts'
import { orderError } from './errors.ts'
import { toCents } from '../../contracts/money.ts'
import { Product } from '../../contracts/product.ts'

const checkProduct = Compile(Product)

export interface PricedProduct {
  id: string
  name: string
  priceCents: number
}

/**
 * The order service's view of the product service: one call, and every way it can fail mapped to
 * an answer for our own client (never a 500).
 */
export class ProductClient {
  readonly #client: ServiceClient
  readonly #serviceName: string

  constructor(client: ServiceClient, serviceName = 'product') {
    this.#client = client
    this.#serviceName = serviceName
  }

  /** `requestId`: the id of the request being served, sent on so that both services log it. */
  async get(productId: string, options: { requestId?: string } = {}): Promise<PricedProduct> {
    let response: UpstreamResponse
    try {
      response = await this.#client.request(this.#serviceName, {
        method: 'GET',
        path: `/products/${encodeURIComponent(productId)}`,
        ...(options.requestId === undefined ? {} : { headers: { 'x-request-id': options.requestId } }),
      })
    } catch (error) {
      if (error instanceof UpstreamError) throw upstreamFailure(error)
      throw error
    }
    if (response.status === 404) throw orderError('UNKNOWN_PRODUCT', `No product with id ${productId}`)
    if (response.status === 503) throw upstreamError('UPSTREAM_UNAVAILABLE', `The ${this.#serviceName} service is unavailable (503)`)
    if (response.status !== 200) {
      throw upstreamError('UPSTREAM_FAILED', `The ${this.#serviceName} service answered ${response.status}`)
    }
    const body = response.body
    const priceCents = checkProduct.Check(body) ? toCents(body.price) : undefined
    if (!checkProduct.Check(body) || priceCents === undefined) {
      throw upstreamError('UPSTREAM_FAILED', `The ${this.#serviceName} service answered with an unexpected product body`)
    }
    return { id: body.id, name: body.name, priceCents }
  }
}
