// The library as the viewer walks it: newest first (the order of GET /api/media), fetched a page at
// a time for the in-VR gallery; next / previous come from the server (GET /api/media/<id>/neighbours).
import { api } from '../api.js';

export class Library {
  constructor(pageSize = 12) {
    this.pageSize = pageSize;
    this.pages = new Map(); // page number (1-based) -> items
    this.total = null;
  }

  get pageCount() {
    return this.total === null ? 1 : Math.max(1, Math.ceil(this.total / this.pageSize));
  }

  /** The items of one page (fetched again after `refresh()`). */
  async page(number) {
    if (!this.pages.has(number)) {
      const body = await api(`/api/media?page=${number}&per_page=${this.pageSize}`);
      this.total = body.total;
      this.pages.set(number, body.items);
    }
    return this.pages.get(number);
  }

  refresh() {
    this.pages.clear();
  }

  /** Page number and position of an item, looking through the pages until it is found. */
  async locate(id) {
    for (let number = 1; number <= this.pageCount; number += 1) {
      const index = (await this.page(number)).findIndex((item) => item.id === id);
      if (index >= 0) return { page: number, index };
    }
    return null;
  }

  /** The item after (step 1: older) or before (-1: newer) the given one, or null at either end. */
  async neighbour(id, step) {
    const { newer, older } = await api(`/api/media/${encodeURIComponent(id)}/neighbours`);
    return step > 0 ? older : newer;
  }
}
